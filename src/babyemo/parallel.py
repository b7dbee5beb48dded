"""Overlap work in threads, in order and with bounded memory.

- :func:`prefetch` runs an iterator one or more steps ahead in a background thread:
  prediction on a GPU, or with one CPU reader, reads and decodes the next batch while the
  model runs on the current one, without the start-up cost and memory of worker processes.
- :func:`ordered_map` runs a function over items in several threads and yields the results
  in input order: CPU prediction runs whole batches (read, decode, model) in one reader per
  core.

Both rely on Pillow and torch releasing the GIL while they decode, resize and compute.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

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


def ordered_map(fn: Callable[[T], R], items: Iterable[T], *, workers: int, ahead: int,
                initializer: Callable[..., object] | None = None,
                initargs: tuple = ()) -> Iterator[R]:
    """Yield ``fn(item)`` for each item, in input order, computed by ``workers`` threads.

    At most ``ahead`` items are submitted and not yet consumed, so memory stays bounded
    however many items there are (``concurrent.futures.Executor.map`` would submit them
    all at once). An exception raised by ``fn`` is re-raised here, at its item's position.
    Closing the generator early cancels what has not started and waits for what has.

    Args:
        fn: Called in a worker thread; should release the GIL for its heavy work
            (Pillow decoding and torch operators do).
        items: Any iterable, consumed lazily in the calling thread.
        workers: Number of threads (>= 1).
        ahead: Maximum submitted but unconsumed items (>= ``workers``).
        initializer: Run once in each worker thread before its first item (e.g.
            ``torch.set_num_threads``), with ``initargs``.

    Returns:
        A generator over the results.
    """
    if workers < 1 or ahead < workers:
        raise ValueError(f"need workers >= 1 and ahead >= workers, got {workers}, {ahead}")
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="babyemo-stream",
                              initializer=initializer, initargs=initargs)
    pending: deque[Future[R]] = deque()
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
