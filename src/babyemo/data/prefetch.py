"""Run an iterator one or more steps ahead in a background thread.

Prediction with 0 DataLoader workers uses it so that reading and decoding the next batch
(Pillow releases the GIL while it decodes and resizes) overlaps the model's forward pass
of the current one, without the start-up cost and memory of worker processes.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

_DONE = object()


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def prefetch(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """Yield the items of ``items`` in order, producing up to ``depth`` ahead in a thread.

    An exception raised by ``items`` is re-raised here, at the position where it occurred.
    Closing the returned generator early (``break``, an exception in the consumer) stops
    the thread after at most the item it is producing.

    Args:
        items: Any iterable; it is iterated in one background thread.
        depth: Maximum number of produced items waiting to be consumed (>= 1).

    Returns:
        A generator over the same items.
    """
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(obj: object) -> bool:
        while not stop.is_set():
            try:
                buffer.put(obj, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
        except BaseException as e:  # re-raised in the consumer
            put(_Failure(e))
            return
        put(_DONE)

    thread = threading.Thread(target=produce, name="babyemo-prefetch", daemon=True)
    thread.start()

    def consume() -> Iterator[T]:
        try:
            while True:
                obj = buffer.get()
                if obj is _DONE:
                    return
                if isinstance(obj, _Failure):
                    raise obj.error
                yield obj  # type: ignore[misc]
        finally:
            stop.set()
            thread.join(timeout=5)

    return consume()
