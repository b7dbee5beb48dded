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
