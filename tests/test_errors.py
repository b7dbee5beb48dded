"""babyemo.errors: the exception family stays one line, even through DataLoader workers."""

from __future__ import annotations

import pytest

from babyemo.errors import DataError, ImageError


class _BadImages:
    def __len__(self):
        return 2

    def __getitem__(self, i):
        raise ImageError(f"/data/img{i}.jpg: truncated image file (12 bytes not processed).")


def test_image_error_from_a_dataloader_worker_stays_one_line():
    from torch.utils.data import DataLoader

    loader = DataLoader(_BadImages(), batch_size=1, num_workers=1)
    with pytest.raises(ImageError) as err:
        next(iter(loader))
    assert err.value.message == "/data/img0.jpg: truncated image file (12 bytes not processed)."
    assert isinstance(err.value, DataError)


def test_image_error_keeps_ordinary_messages():
    e = ImageError("Caught nothing: a.jpg: empty file.", "hint")
    assert e.message == "Caught nothing: a.jpg: empty file." and e.hint == "hint"
