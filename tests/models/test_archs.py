"""Tests of the registered architectures (torchvision wrappers and seed networks)."""

from __future__ import annotations

import inspect
import urllib.error

import pytest
import torch
import torchvision
from torch import nn

from babyemo.config import IMAGENET_MEAN, InputSpec
from babyemo.errors import ConfigError, DownloadError, RegistryError
from babyemo.models import registry, seeds
from babyemo.models.registry import create_model, get_arch, list_archs, register_arch

ARCH_NAMES = [info.name for info in list_archs()]
SLOW_NAMES = {"vgg16", "cnn3", "resnet50"}  # > 3 s each for two builds and a round trip
TORCHVISION_NAMES = ["resnet18", "resnet34", "resnet50", "mobilenet_v3_small",
                     "mobilenet_v3_large", "efficientnet_b0", "vgg16"]
SEED_NAMES = ["custom_resnet", "skip_cnn", "cnn3", "vgg_fer"]


def _takes_input_size(name: str) -> bool:
    return get_arch(name).takes_input_size


def _test_size(name: str) -> int:
    """Default size for flatten-based archs, 64 px (fast, and a small size) for the others."""
    return get_arch(name).default_input.size if _takes_input_size(name) else 64


def _batch(name: str, size: int | None = None, n: int = 2) -> torch.Tensor:
    spec = get_arch(name).default_input
    size = size or _test_size(name)
    return torch.randn(n, spec.channels, size, size, generator=torch.Generator().manual_seed(1))


@pytest.fixture
def scratch_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Registrations made in the test are forgotten afterwards (built-ins stay loaded)."""
    list_archs()  # load the built-ins into the real dict first
    monkeypatch.setattr(registry, "_ARCHS", dict(registry._ARCHS))


def test_all_expected_archs_registered() -> None:
    assert set(TORCHVISION_NAMES + SEED_NAMES) <= set(ARCH_NAMES)
    for name in TORCHVISION_NAMES:
        info = get_arch(name)
        assert info.pretrained and "torchvision" in info.description
        assert info.default_input == InputSpec(112, 3, IMAGENET_MEAN)
    for name in SEED_NAMES:
        assert not get_arch(name).pretrained
    assert get_arch("vgg_fer").default_input == InputSpec(48, 1, (0.5,), (0.5,))
    assert get_arch("cnn3").default_input == InputSpec(256, 3, (0.0,) * 3, (1.0,) * 3)
    assert {n for n in ARCH_NAMES if _takes_input_size(n)} >= {"cnn3", "vgg_fer"}


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_NAMES else n for n in ARCH_NAMES])
def test_forward_shape_and_state_dict_round_trip(name: str, tmp_path) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=3).eval()
    x = _batch(name)
    with torch.no_grad():
        logits = model(x)
    assert logits.shape == (2, 3)
    assert logits.dtype == torch.float32
    assert torch.isfinite(logits).all()

    path = tmp_path / "state_dict.pt"
    torch.save(model.state_dict(), path)
    del model
    torch.manual_seed(1)
    fresh = create_model(name, num_classes=3).eval()
    with torch.no_grad():
        assert not torch.equal(fresh(x), logits)  # a different init gives other logits
        fresh.load_state_dict(torch.load(path, weights_only=True, mmap=True))
        assert torch.equal(fresh(x), logits)


@pytest.mark.parametrize("name", ["custom_resnet", "skip_cnn", "mobilenet_v3_small"])
def test_global_pooling_archs_accept_112_px(name: str) -> None:
    model = create_model(name, num_classes=4).eval()
    with torch.no_grad():
        assert model(_batch(name, size=112)).shape == (2, 4)


@pytest.mark.parametrize(("name", "size"), [("cnn3", 64), ("cnn3", 22), ("vgg_fer", 96),
                                            ("vgg_fer", 8)])
def test_flatten_archs_other_input_size(name: str, size: int) -> None:
    model = create_model(name, num_classes=2, input_size=size).eval()
    with torch.no_grad():
        assert model(_batch(name, size=size)).shape == (2, 2)
    with pytest.raises(ConfigError, match=f"built for {size}x{size}"):
        model(_batch(name, size=size + 8))


def test_flatten_sizes_follow_the_original_design() -> None:
    cnn3 = create_model("cnn3", num_classes=2)
    assert cnn3.classifier[1].in_features == 128 * 30 * 30  # 256 -> 254 -> 127 -> ... -> 30
    vgg = create_model("vgg_fer", num_classes=7)
    assert vgg.classifier[1][0].in_features == 256 * 6 * 6  # 48 / 2 / 2 / 2 = 6


@pytest.mark.parametrize(("name", "size"), [("cnn3", 21), ("vgg_fer", 7), ("cnn3", "256")])
def test_flatten_archs_reject_bad_input_size(name: str, size: object) -> None:
    with pytest.raises(ConfigError, match="input_size"):
        create_model(name, num_classes=2, input_size=size)


def test_custom_resnet_structure_follows_kwargs() -> None:
    model = create_model("custom_resnet", num_classes=5, widths=[8, 16, 24],
                         blocks_per_stage=3, dropout=0.1)
    blocks = [m for m in model.modules() if isinstance(m, seeds.ResidualBlock)]
    assert len(blocks) == 9
    projections = [b for b in blocks if not isinstance(b.shortcut, nn.Identity)]
    assert len(projections) == 2  # stem width 8 -> 8 is identity; 8 -> 16, 16 -> 24 project
    assert isinstance(model[-1], nn.Linear) and model[-1].in_features == 24
    with torch.no_grad():
        assert model.eval()(_batch("custom_resnet", size=32)).shape == (2, 5)


@pytest.mark.parametrize("kwargs", [{"widths": []}, {"widths": [8, 0]}, {"blocks_per_stage": 0},
                                    {"dropout": 1.0}])
def test_custom_resnet_rejects_bad_kwargs(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        create_model("custom_resnet", num_classes=2, **kwargs)


def test_skip_cnn_has_exactly_one_identity_skip() -> None:
    model = create_model("skip_cnn", num_classes=2)
    blocks = [m for m in model.modules() if isinstance(m, seeds.ResidualBlock)]
    assert len(blocks) == 1 and isinstance(blocks[0].shortcut, nn.Identity)


def test_tiny_arch_through_public_decorator(scratch_registry: None) -> None:
    name = "test_tiny_linear_arch"

    @register_arch(name, default_input=InputSpec(size=8, channels=1, mean=(0.0,), std=(1.0,)),
                   description="Tiny test arch")
    def build(*, num_classes: int, in_channels: int, pretrained: bool = False) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * 8 * 8, num_classes))

    assert name in [info.name for info in list_archs("test_tiny_*")]
    model = create_model(name, num_classes=4)
    assert model(torch.zeros(3, 1, 8, 8)).shape == (3, 4)


def test_duplicate_registration_raises(scratch_registry: None) -> None:
    with pytest.raises(RegistryError, match="already registered"):
        register_arch("resnet18", default_input=InputSpec(),
                      description="dup")(lambda **kw: nn.Identity())


def test_unknown_name_suggests_close_match() -> None:
    with pytest.raises(RegistryError) as info:
        create_model("resnet81", num_classes=3)
    assert "resnet18" in info.value.hint


def test_num_classes_below_two_raises() -> None:
    with pytest.raises(ConfigError, match="num_classes"):
        create_model("skip_cnn", num_classes=1)


@pytest.mark.parametrize("name", SEED_NAMES)
def test_pretrained_seed_arch_raises(name: str) -> None:
    with pytest.raises(ConfigError, match="no pretrained weights"):
        create_model(name, num_classes=3, pretrained=True)
    with pytest.raises(ConfigError, match="no pretrained weights"):  # builder called directly
        get_arch(name).builder(num_classes=3, in_channels=3, pretrained=True)


def test_torchvision_arch_rejects_unknown_kwarg_and_grayscale() -> None:
    with pytest.raises(ConfigError, match="resnet18"):
        create_model("resnet18", num_classes=3, no_such_option=1)
    with pytest.raises(ConfigError, match="3-channel"):
        get_arch("resnet18").builder(num_classes=3, in_channels=1)


def test_pretrained_download_failure_is_download_error(
        tmp_path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # empty cache

    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(DownloadError) as info:
        create_model("resnet18", num_classes=3, pretrained=True)
    assert "resnet18" in info.value.message and "no network" in info.value.message
    assert "--init" in info.value.hint and "TORCH_HOME" in info.value.hint
    assert capsys.readouterr().out == ""  # torch.hub's "Downloading" line is not on stdout


def test_pretrained_loads_cached_weights_and_replaces_head(
        tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    weights = torchvision.models.ResNet18_Weights.DEFAULT
    torch.manual_seed(3)
    imagenet = torchvision.models.resnet18()  # stands in for the real ImageNet weights
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(imagenet.state_dict(), cache / weights.url.rsplit("/", 1)[-1])

    torch.manual_seed(4)
    model = create_model("resnet18", num_classes=3, pretrained=True)
    assert torch.equal(model.conv1.weight, imagenet.conv1.weight)
    assert torch.equal(model.layer4[1].bn2.running_var, imagenet.layer4[1].bn2.running_var)
    assert isinstance(model.fc, nn.Linear) and (model.fc.in_features, model.fc.out_features) \
        == (512, 3)
    with torch.no_grad():
        assert model.eval()(_batch("resnet18")).shape == (2, 3)


def test_corrupt_cached_weights_is_download_error(
        tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    weights = torchvision.models.MobileNet_V3_Small_Weights.DEFAULT
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    (cache / weights.url.rsplit("/", 1)[-1]).write_bytes(b"not a checkpoint")
    with pytest.raises(DownloadError, match="mobilenet_v3_small"):
        create_model("mobilenet_v3_small", num_classes=3, pretrained=True)


def test_builtin_names_match_what_the_builtin_modules_register() -> None:
    registered = {a.name for a in list_archs()
                  if a.builder.__module__ in registry._BUILTIN_MODULES}
    assert registered == set(registry.BUILTIN_ARCHS)


def test_check_arch_name_needs_no_torch() -> None:
    """Issue 12: `train --arch resnet19` took 3.6 s (torch import) to suggest resnet18."""
    from tests.conftest import run_cli_in_subprocess

    proc = run_cli_in_subprocess(["train", "--arch", "resnet19"], exit_code=1)
    assert "Unknown architecture 'resnet19'" in proc.stderr and "resnet18" in proc.stderr
    registry.check_arch_name("custom_resnet")
    with pytest.raises(RegistryError, match="did you mean"):
        registry.check_arch_name("custom_resnt")


def _last_linear(model: nn.Module) -> str | None:
    """The rule training used before archs declared their head: the last nn.Linear."""
    last = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = name
    return last


HEADS = {"resnet18": "fc", "resnet34": "fc", "resnet50": "fc",
         "mobilenet_v3_small": "classifier.3", "mobilenet_v3_large": "classifier.3",
         "efficientnet_b0": "classifier.1", "vgg16": "classifier.6", "custom_resnet": "13",
         "skip_cnn": "10", "cnn3": "classifier.4", "vgg_fer": "classifier.3"}
"""The module name of each built-in arch's classifier head (default kwargs)."""


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_NAMES else n
             for n in registry.BUILTIN_ARCHS])
def test_builtin_archs_declare_their_head_and_kwargs(name: str) -> None:
    """Issue 14: the registry says where the head is; training no longer guesses it."""
    info = get_arch(name)
    assert info.head is not None
    model = create_model(info, num_classes=5)
    head = info.head_name(model)
    assert head == HEADS[name] == _last_linear(model)
    layer = model.get_submodule(head)
    assert isinstance(layer, nn.Linear) and layer.out_features == 5
    assert info.head_keys(model) == {f"{head}.weight", f"{head}.bias"}
    assert info.head_keys(model) <= model.state_dict().keys()
    # the declared kwargs match the builder's signature
    assert info.takes_input_size == ("input_size" in inspect.signature(info.builder).parameters)
    assert info.builder_kwargs({"a": 1}, 40) == (
        {"a": 1, "input_size": 40} if info.takes_input_size else {"a": 1})
    assert info.builder_kwargs({"input_size": 32}, 40).get("input_size", 32) == 32


def test_custom_resnet_head_follows_its_kwargs() -> None:
    info = get_arch("custom_resnet")
    model = create_model(info, num_classes=4, widths=[8, 16, 24], blocks_per_stage=3)
    assert info.head == "-1" and info.head_name(model) == "14" == _last_linear(model)


def test_undeclared_head_and_kwargs_fall_back_to_the_model(scratch_registry: None) -> None:
    """Third-party archs need not declare: last nn.Linear, input_size from the signature."""

    @register_arch("test_fallback_arch", default_input=InputSpec(size=8, channels=1,
                                                                  mean=(0.0,), std=(1.0,)),
                   description="fallback")
    def build(*, num_classes: int, in_channels: int, pretrained: bool = False,
              input_size: int = 8) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * input_size ** 2, 6),
                             nn.ReLU(), nn.Linear(6, num_classes), nn.Identity())

    @register_arch("test_no_linear_arch", default_input=InputSpec(size=8, channels=1,
                                                                   mean=(0.0,), std=(1.0,)),
                   description="no head", takes_input_size=False)
    def build_conv(*, num_classes: int, in_channels: int, pretrained: bool = False,
                   input_size: int = 8) -> nn.Module:
        return nn.Sequential(nn.Conv2d(in_channels, num_classes, 1), nn.AdaptiveAvgPool2d(1),
                             nn.Flatten())

    info = get_arch("test_fallback_arch")
    assert info.head is None and info.takes_input_size
    model = create_model(info, num_classes=3, **info.builder_kwargs({}, 16))
    assert info.head_name(model) == "3" and info.head_keys(model) == {"3.weight", "3.bias"}
    conv = get_arch("test_no_linear_arch")
    assert not conv.takes_input_size  # declared, whatever the signature says
    assert conv.builder_kwargs({}, 16) == {}
    assert conv.head_keys(create_model(conv, num_classes=3)) == set()


def test_declared_head_must_be_a_linear(scratch_registry: None) -> None:
    spec = InputSpec(size=8, channels=1, mean=(0.0,), std=(1.0,))

    def build(*, num_classes: int, in_channels: int, pretrained: bool = False) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(64, num_classes), nn.Identity())

    for name, head, match in (("test_bad_head", "2", "not an nn.Linear"),
                              ("test_missing_head", "fc", "no submodule 'fc'"),
                              ("test_far_head", "-4", "no submodule '-4'")):
        register_arch(name, default_input=spec, description="bad", head=head)(build)
        info = get_arch(name)
        with pytest.raises(RegistryError, match=match):
            info.head_keys(create_model(info, num_classes=2))
    register_arch("test_neg_head", default_input=spec, description="ok", head="-2")(build)
    good = get_arch("test_neg_head")
    assert good.head_name(create_model(good, num_classes=2)) == "1"


def test_replace_head_follows_the_declared_head() -> None:
    from babyemo.models.torchvision_archs import replace_head

    info = get_arch("mobilenet_v3_small")
    model = create_model(info, num_classes=3)
    new = replace_head(model, info.head, 7)
    assert model.classifier[3] is new and new.out_features == 7
    with pytest.raises(RegistryError, match="not an nn.Linear"):
        replace_head(model, "classifier.1", 2)  # a Hardswish
