"""The in-memory parts of ``babyemo serve``: body limit, multipart parsing, the batching
queue, and image errors told from the uploaded bytes (never from a file of that name)."""

from __future__ import annotations

import asyncio
import io
import threading

import pytest
import torch
from PIL import Image

from babyemo.data.loading.images import load_image
from babyemo.errors import ImageError
from babyemo.serve.uploads import Batcher, UploadError, parse_multipart, read_body


def _stream(*chunks: bytes):
    async def gen():
        for c in chunks:
            yield c
    return gen()


def test_read_body_stops_at_the_limit():
    assert asyncio.run(read_body(_stream(b"ab", b"cd"), None, 4)) == b"abcd"
    with pytest.raises(UploadError) as e:
        asyncio.run(read_body(_stream(b"ab", b"cde"), None, 4))
    assert e.value.status == 413
    with pytest.raises(UploadError, match="10 bytes"):  # refused from the header, unread
        asyncio.run(read_body(_stream(), "10", 4))


def test_parse_multipart_in_memory():
    pytest.importorskip("python_multipart")
    body = (b"--B\r\nContent-Disposition: form-data; name=\"files\"; filename=\"a b.png\"\r\n"
            b"Content-Type: image/png\r\n\r\n\x00\r\n\xff--\r\n--B\r\n"
            b"Content-Disposition: form-data; name=\"note\"\r\n\r\nhi\r\n--B--\r\n")
    parts = parse_multipart("multipart/form-data; boundary=B", body, max_parts=2)
    assert [(p.field, p.filename, p.data) for p in parts] == [
        ("files", "a b.png", b"\x00\r\n\xff--"), ("note", None, b"hi")]
    with pytest.raises(UploadError, match="More than 1"):
        parse_multipart("multipart/form-data; boundary=B", body, max_parts=1)
    with pytest.raises(UploadError, match="closing boundary"):
        parse_multipart("multipart/form-data; boundary=B", body[:60], max_parts=2)


def test_batcher_joins_concurrent_jobs_into_one_pass():
    calls: list[int] = []
    gate = threading.Event()

    def probs(images: torch.Tensor) -> torch.Tensor:
        gate.wait(5)
        calls.append(len(images))
        return images.float().mean(dim=(2, 3))

    batcher = Batcher(probs, max_batch=100, wait_s=0.2)
    jobs = [torch.full((n, 3, 2, 2), n, dtype=torch.uint8) for n in (1, 2, 3)]
    futures = [batcher.submit(j) for j in jobs]
    gate.set()
    results = [f.result(5) for f in futures]
    batcher.close()
    assert calls == [6]  # one forward pass for the three jobs
    assert [r.shape[0] for r in results] == [1, 2, 3]
    assert [float(r[0, 0]) for r in results] == [1.0, 2.0, 3.0]


def test_batcher_hands_a_model_error_to_each_job():
    def fail(images: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom")

    batcher = Batcher(fail, max_batch=4, wait_s=0.0)
    with pytest.raises(RuntimeError, match="boom"):
        batcher.submit(torch.zeros(1, 3, 2, 2, dtype=torch.uint8)).result(5)
    batcher.close()


def test_image_errors_come_from_the_bytes_not_a_file_of_that_name(tmp_path):
    """An upload named like a local file: its reason is told from its own bytes."""
    local = tmp_path / "x.webp"
    local.write_text("a text file on the server's disk\n")
    buf = io.BytesIO()
    Image.new("RGB", (30, 30)).save(buf, format="WEBP")
    cut = buf.getvalue()[:-10]
    with pytest.raises(ImageError) as e:
        load_image(local, data=cut)
    assert e.value.code == "truncated" and f"only {len(cut):,} bytes" in e.value.message
    with pytest.raises(ImageError) as e:
        load_image(local, data=b"")
    assert e.value.code == "empty_file"
