import pytest

from babyemo.config import AugmentConfig, InputSpec, Precision, TrainConfig
from babyemo.errors import BabyEmoError, ConfigError, RegistryError, unknown_name


def test_input_spec_round_trip_and_validation():
    spec = InputSpec(size=64, channels=1, mean=(0.5,), std=(0.25,))
    assert InputSpec.from_dict(spec.to_dict()) == spec
    assert spec.with_size(32).size == 32 and spec.with_size(None) is spec
    with pytest.raises(ConfigError, match="mean and std need 3"):
        InputSpec(size=64, channels=3, mean=(0.5,), std=(0.5,))
    with pytest.raises(ConfigError, match="input size"):
        InputSpec(size=4)


def test_train_config_round_trip_is_plain_types():
    cfg = TrainConfig(epochs=3, precision="bf16", augment=AugmentConfig.preset("light"))
    d = cfg.to_dict()
    assert d["precision"] == "bf16" and isinstance(d["augment"], dict)
    back = TrainConfig.from_dict({**d, "unknown_key": 1})
    assert back.precision is Precision.bf16 and back.augment == cfg.augment
    assert back.to_dict() == d


@pytest.mark.parametrize("field,value", [("epochs", 0), ("batch_size", 0), ("lr", 0.0),
                                         ("label_smoothing", 1.0), ("patience", 0)])
def test_train_config_rejects_bad_values(field, value):
    with pytest.raises(ConfigError, match=f"'{field}' parameter"):
        TrainConfig(**{field: value})


def test_train_config_takes_the_cli_strings():
    """Issue 14: --augment and --train-on were parsed by the CLI; the API takes them too."""
    cfg = TrainConfig(augment="light", train_splits="train,val")
    assert cfg.augment == AugmentConfig.preset("light")
    assert cfg.train_splits == ("train", "val")
    assert TrainConfig(train_splits=" train , val ,").train_splits == ("train", "val")
    assert TrainConfig(train_splits="train").train_splits == ("train",)
    assert TrainConfig(augment="default").augment == TrainConfig().augment
    assert cfg.to_dict()["train_splits"] == ["train", "val"]
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="Unknown augmentation preset"):
        TrainConfig(augment="heavy")
    with pytest.raises(ConfigError, match="train_splits"):
        TrainConfig(train_splits="val")


def test_train_config_reads_the_old_early_stopping_key():
    """Configs saved before the rename (checkpoints, config.json) say early_stopping."""
    old = {**TrainConfig().to_dict(), "early_stopping": 5}
    del old["patience"]
    assert TrainConfig.from_dict(old).patience == 5
    assert "early_stopping" not in TrainConfig(patience=5).to_dict()
    assert TrainConfig.from_dict({"patience": 2, "early_stopping": 5}).patience == 2


def test_augment_unknown_preset():
    with pytest.raises(ConfigError, match="Unknown augmentation preset"):
        AugmentConfig.preset("heavy")


def test_errors_carry_hint_and_close_matches():
    err = unknown_name("architecture", "resnet81", ["resnet18", "resnet34", "vgg16"])
    assert isinstance(err, RegistryError) and isinstance(err, BabyEmoError)
    assert "resnet18" in err.hint and "resnet81" in err.message
    assert "resnet81" in str(err)
