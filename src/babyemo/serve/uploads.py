"""Uploads held in memory: the request body read under a size limit, its multipart form
parsed without spooling to disk, and the images of concurrent requests batched into one
forward pass.

Nothing here writes a file: the body is read into memory (at most ``max_bytes``), the form
is parsed with ``python-multipart``'s streaming parser (Starlette's own form parser spools
files over 1 MB to a temporary file), and images are decoded from their bytes
(:meth:`babyemo.prediction.Predictor.read_image`).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from babyemo.data.loading.dataset import FileItem


class UploadError(Exception):
    """A request the API refuses as a whole (an HTTP error with a JSON body).

    Args:
        status: HTTP status (413, 422, 401...).
        code: Short machine-readable code (``too_large``, ``no_files``...).
        detail: What is wrong, naming the value received.
        hint: What the client can do about it.
    """

    def __init__(self, status: int, code: str, detail: str, hint: str | None = None) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail, self.hint = status, code, detail, hint


@dataclass
class Upload:
    """One uploaded file of a multipart form.

    Attributes:
        field: The form field's name (``files``).
        filename: The file name the client gave (``None`` for a plain form value).
        data: Its bytes.
    """

    field: str
    filename: str | None
    data: bytes = b""


async def read_body(stream: AsyncIterator[bytes], content_length: str | None,
                    max_bytes: int) -> bytes:
    """The request body, read into memory, refused as soon as it is over ``max_bytes``.

    Args:
        stream: The body's chunks (``request.stream()``).
        content_length: The ``Content-Length`` header, if any (checked before reading).
        max_bytes: Largest body accepted, in bytes.

    Raises:
        UploadError: 413 ``request_too_large``.
    """
    def too_large(size: str) -> UploadError:
        return UploadError(413, "request_too_large",
                           f"The request body is {size}, over the {max_bytes:,}-byte limit.",
                           "send fewer or smaller photos per request")

    if content_length is not None and content_length.strip().isdigit() \
            and int(content_length) > max_bytes:
        raise too_large(f"{int(content_length):,} bytes")
    chunks, size = [], 0
    async for chunk in stream:
        size += len(chunk)
        if size > max_bytes:
            raise too_large(f"over {max_bytes:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_multipart(content_type: str | None, body: bytes, *, max_parts: int) -> list[Upload]:
    """The parts of a ``multipart/form-data`` body, in memory.

    Args:
        content_type: The request's ``Content-Type`` header.
        body: The whole body.
        max_parts: Most parts accepted (files and plain values).

    Raises:
        UploadError: 422 ``bad_form`` (not multipart, no boundary, malformed) or
            ``too_many_files`` (more than ``max_parts`` parts).
    """
    try:
        from python_multipart import MultipartParser
        from python_multipart.multipart import parse_options_header
    except ImportError:  # python-multipart < 0.0.13
        from multipart import MultipartParser  # type: ignore[no-redef]
        from multipart.multipart import parse_options_header  # type: ignore[no-redef]

    hint = "POST multipart/form-data with the photos in the field 'files'"
    kind, options = parse_options_header((content_type or "").encode("latin-1", "replace"))
    if kind != b"multipart/form-data" or not options.get(b"boundary"):
        raise UploadError(422, "bad_form", "The request is not a multipart/form-data form "
                          f"(Content-Type: {content_type or 'none'}).", hint)
    parts: list[Upload] = []
    state: dict[str, Any] = {"field": b"", "value": b"", "headers": {}, "data": []}

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["value"] += data[start:end]

    def on_header_end() -> None:
        state["headers"][state["field"].lower()] = state["value"]
        state["field"], state["value"] = b"", b""

    def on_part_data(data: bytes, start: int, end: int) -> None:
        state["data"].append(data[start:end])

    def on_part_end() -> None:
        _, disposition = parse_options_header(state["headers"].get(b"content-disposition", b""))
        name = disposition.get(b"name", b"").decode("utf-8", "replace")
        raw = disposition.get(b"filename")
        filename = raw.decode("utf-8", "replace") if raw is not None else None
        parts.append(Upload(name, filename, b"".join(state["data"])))
        state["headers"], state["data"] = {}, []
        if len(parts) > max_parts:
            raise UploadError(422, "too_many_files", f"More than {max_parts} files in one "
                              "request.", f"send at most {max_parts} photos per request")

    def on_end() -> None:
        state["ended"] = True

    parser = MultipartParser(options[b"boundary"], callbacks={  # type: ignore[arg-type]
        "on_header_field": on_header_field, "on_header_value": on_header_value,
        "on_header_end": on_header_end, "on_part_data": on_part_data,
        "on_part_end": on_part_end, "on_end": on_end})
    try:
        parser.write(body)
        parser.finalize()
    except UploadError:
        raise
    except Exception as e:  # the parser's own errors: a malformed body
        raise UploadError(422, "bad_form", f"The multipart form cannot be parsed ({e}).",
                          hint) from None
    if not state.get("ended"):
        raise UploadError(422, "bad_form", "The multipart form ends before its closing "
                          "boundary (a cut-off upload?).", hint)
    return parts


def image_pixels(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` of an image from its header (nothing decoded), or ``None`` when
    Pillow cannot open it (its error row will say why)."""
    import io

    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.size
    except Exception:  # not an image, or a damaged header: the error row says why
        return None


def upright_size(data: bytes, size: tuple[int, int]) -> tuple[int, int]:
    """``size`` as the upright image has it: swapped when the EXIF orientation turns the
    image by 90 degrees (orientations 5-8)."""
    import io

    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            orientation = img.getexif().get(0x0112)
    except Exception:  # a damaged EXIF block: the image is used as stored
        return size
    return (size[1], size[0]) if orientation in (5, 6, 7, 8) else size


@dataclass
class _Job:
    images: torch.Tensor
    future: Future[torch.Tensor] = field(default_factory=Future)


class Batcher:
    """One queue and one worker thread that run the model: the images of concurrent
    requests are stacked into one forward pass.

    The worker takes the first waiting job, then keeps taking jobs for up to ``wait_s``
    seconds or until ``max_batch`` images are gathered, runs them as one batch and hands
    each job its rows of the probabilities. A thread (not an asyncio task) so that it
    does not depend on the event loop a request runs in; requests await its futures.

    Args:
        probs: ``(N, C, S, S) uint8`` -> ``(N, K) float32`` probabilities (the
            predictor's :meth:`~babyemo.prediction.Predictor.predict_tensor`).
        max_batch: Most images per forward pass (a larger single job runs alone).
        wait_s: Longest wait for more jobs after the first, in seconds.

    Attributes:
        batches: Forward passes run so far.
        images: Images classified so far.
    """

    def __init__(self, probs: Any, *, max_batch: int, wait_s: float) -> None:
        self._probs, self.max_batch, self.wait_s = probs, max_batch, wait_s
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.batches = 0
        self.images = 0

    def submit(self, images: torch.Tensor) -> Future[torch.Tensor]:
        """Queue ``(M, C, S, S) uint8`` images; the future gives their ``(M, K)``
        probabilities (or the model's exception)."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="babyemo-serve-model",
                                                daemon=True)
                self._thread.start()
        job = _Job(images)
        self._queue.put(job)
        return job.future

    def close(self) -> None:
        """Stop the worker once the jobs queued before are done."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                self._queue.put(None)
                self._thread.join(timeout=30)
            self._thread = None

    def _gather(self, first: _Job) -> tuple[list[_Job], bool]:
        jobs, n = [first], len(first.images)
        deadline = time.monotonic() + self.wait_s
        while n < self.max_batch:
            left = deadline - time.monotonic()
            try:
                job = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                return jobs, True
            jobs.append(job)
            n += len(job.images)
        return jobs, False

    def _run(self) -> None:
        import torch

        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs, stop = self._gather(first)
            try:
                probs = self._probs(torch.cat([job.images for job in jobs]))
            except BaseException as e:  # handed to every request of the batch
                for job in jobs:
                    job.future.set_exception(e)
            else:
                self.batches += 1
                self.images += len(probs)
                start = 0
                for job in jobs:
                    job.future.set_result(probs[start:start + len(job.images)])
                    start += len(job.images)
            if stop:
                return


def collate(items: Sequence[FileItem]) -> torch.Tensor | None:
    """The ``(M, C, S, S) uint8`` model inputs of every entry of ``items``, in order (see
    :func:`~babyemo.data.loading.dataset.collate_files`), or ``None`` when there is none."""
    from babyemo.data.loading.dataset import collate_files

    return collate_files(list(items)).images
