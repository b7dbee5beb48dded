import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from babyemo.config import AugmentConfig, InputSpec
from babyemo.transforms import eval_transform, normalize, train_transform

SPEC = InputSpec(size=16, channels=3, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


def _photo(size=(40, 30)):
    img = Image.new("RGB", size)
    img.putdata([(x * 6 % 256, y * 8 % 256, (x + y) % 256) for y in range(size[1])
                 for x in range(size[0])])
    return img


def test_transforms_give_uint8_pixels_of_the_input_size():
    for tf in (eval_transform(SPEC), train_transform(SPEC, AugmentConfig())):
        x = tf(_photo())
        assert x.dtype == torch.uint8 and x.shape == (3, 16, 16)


def test_normalize_matches_torchvisions_float_pipeline():
    x = eval_transform(SPEC)(_photo())
    reference = v2.Normalize(list(SPEC.mean), list(SPEC.std))(
        v2.ToDtype(torch.float32, scale=True)(x))
    batch = normalize(torch.stack([x, x]), SPEC)
    assert batch.dtype == torch.float32 and batch.shape == (2, 3, 16, 16)
    assert torch.allclose(batch[0], reference, atol=1e-5)
    assert torch.allclose(normalize(x, SPEC), reference, atol=1e-5)  # a single image too


def test_normalize_passes_float_input_through_unchanged():
    x = torch.randn(2, 3, 16, 16)
    assert normalize(x, SPEC) is x


@pytest.mark.parametrize("channels", [1, 3])
def test_normalize_uses_one_mean_and_std_per_channel(channels):
    spec = InputSpec(size=8, channels=channels, mean=(0.5,) * channels, std=(0.25,) * channels)
    x = torch.full((1, channels, 8, 8), 255, dtype=torch.uint8)
    assert torch.allclose(normalize(x, spec), torch.full((1, channels, 8, 8), 2.0))


@pytest.mark.parametrize("mode", ["RGB", "L"])
@pytest.mark.parametrize("size", [(40, 30), (30, 64), (16, 16), (9, 12)])
def test_eval_transform_matches_torchvisions_pil_pipeline(mode, size):
    """Same geometry as Resize + CenterCrop on the PIL image, pixels within 2 levels."""
    img = _photo(size).convert(mode)
    reference = v2.Compose([v2.Resize(16, antialias=True), v2.CenterCrop(16), v2.ToImage()])(img)
    x = eval_transform(SPEC)(img)
    assert x.dtype == torch.uint8 and x.shape == reference.shape == (len(mode), 16, 16)
    assert (x.int() - reference.int()).abs().max() <= 2


def test_eval_transform_takes_a_uint8_tensor_like_the_pil_image():
    img = _photo()
    tensor = torch.from_numpy(np.array(img)).permute(2, 0, 1).contiguous()
    assert torch.equal(eval_transform(SPEC)(tensor), eval_transform(SPEC)(img))


PRESETS = ["none", "light", "default", "strong", "bridge",
           "default,auto=randaugment,random_erasing=1,grayscale=1,blur=1,downscale=1"]


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("channels", [1, 3])
def test_augment_presets_give_uint8_pixels_and_repeat_under_a_seed(preset, channels):
    spec = InputSpec(size=16, channels=channels, mean=(0.5,) * channels, std=(0.5,) * channels)
    tf = train_transform(spec, AugmentConfig.parse(preset))
    img = _photo().convert("RGB" if channels == 3 else "L")
    torch.manual_seed(3)
    a = [tf(img) for _ in range(3)]
    torch.manual_seed(3)
    b = [tf(img) for _ in range(3)]
    assert all(x.dtype == torch.uint8 and x.shape == (channels, 16, 16) for x in a)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_the_default_augmentation_is_unchanged():
    assert AugmentConfig.preset("default") == AugmentConfig() == AugmentConfig.parse("default")
    steps = [type(t).__name__ for t in train_transform(SPEC, AugmentConfig()).transforms]
    assert steps == ["RandomResizedCrop", "RandomHorizontalFlip", "RandomAffine", "ColorJitter",
                     "ToImage"]
    strong = [type(t).__name__ for t in train_transform(SPEC, AugmentConfig.preset("strong")
                                                        ).transforms]
    assert strong == steps[:4] + ["TrivialAugmentWide", "ToImage", "RandomErasing"]
    # an older checkpoint's augment dict (without the new fields) reads as before
    old = {"hflip": 0.5, "rotation": 10.0, "translate": 0.1, "scale": [0.8, 1.0],
           "color_jitter": 0.2}
    assert AugmentConfig.from_dict(old) == AugmentConfig()
    assert AugmentConfig.from_dict(AugmentConfig.preset("bridge").to_dict()) == \
        AugmentConfig.preset("bridge")


def test_bridge_steps_gray_blur_and_downscale_the_image():
    spec = InputSpec(size=32, channels=3, mean=(0.5,) * 3, std=(0.5,) * 3)
    img = Image.new("RGB", (32, 32))
    img.putdata([((x * 37 + y * 11) % 256, (x * 7) % 256, ((x ^ y) * 16) % 256)
                 for y in range(32) for x in range(32)])
    none = AugmentConfig.preset("none")
    plain = train_transform(spec, none)(img).float()
    gray = train_transform(spec, AugmentConfig.parse("none,grayscale=1"))(img)
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])

    def detail(x):  # mean absolute difference of neighbouring pixels
        x = x.float()
        return (x[..., 1:] - x[..., :-1]).abs().mean().item()

    for change in ("blur=1", "downscale=1"):
        torch.manual_seed(0)
        out = train_transform(spec, AugmentConfig.parse(f"none,{change}"))(img)
        assert out.shape == (3, 32, 32) and detail(out) < 0.8 * detail(plain), change
    torch.manual_seed(0)
    erased = train_transform(spec, AugmentConfig.parse("none,random_erasing=1"))(img)
    assert (erased == 0).all(0).sum() > (plain == 0).all(0).sum()


@pytest.mark.parametrize(("text", "match"), [("heavy", "augmentation preset"),
                                             ("default,colour=1", "Cannot read"),
                                             ("default,blur", "Cannot read"),
                                             ("default,blur=lots", "not a number"),
                                             ("default,blur=1.5", "probability"),
                                             ("default,auto=autoaugment", "automatic"),
                                             ("default,scale=0.9:0.5", "scale")])
def test_augment_changes_are_checked(text, match):
    from babyemo.errors import ConfigError

    with pytest.raises(ConfigError, match=match):
        AugmentConfig.parse(text)


def test_augment_changes_apply_to_the_preset():
    cfg = AugmentConfig.parse("light, random_erasing=0.25, auto=randaugment, scale=0.7:1")
    assert cfg.random_erasing == 0.25 and cfg.auto == "randaugment" and cfg.scale == (0.7, 1.0)
    assert cfg.rotation == AugmentConfig.preset("light").rotation
    assert AugmentConfig.parse("strong,auto=none").auto is None
