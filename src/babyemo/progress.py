"""The one progress helper: rich progress bars on stderr.

Bars are shown only when stderr is a terminal and not disabled with :func:`set_quiet`
(``--quiet``); otherwise every call is a cheap no-op, so library code can always use it.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any

_quiet = False


def set_quiet(quiet: bool) -> None:
    """Disable (``True``) or enable progress bars for this process."""
    global _quiet
    _quiet = quiet


def quiet() -> bool:
    """True after ``set_quiet(True)`` (``babyemo --quiet``): no progress and no live lines."""
    return _quiet


def enabled() -> bool:
    """True when progress bars are drawn (stderr is a TTY and not quiet)."""
    return not _quiet and sys.stderr.isatty()


class _Task:
    def __init__(self, progress: Any, task_id: Any) -> None:
        self._progress, self._id = progress, task_id

    def advance(self, n: float = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._id, n)

    def update(self, **fields: Any) -> None:
        """Update ``total``, ``description`` or ``completed`` (rich semantics)."""
        if self._progress is not None:
            self._progress.update(self._id, **fields)


@contextlib.contextmanager
def progress_bar(description: str, total: float | None, unit: str = "it") -> Iterator[_Task]:
    """A transient progress bar on stderr.

    Args:
        description: Text left of the bar.
        total: Number of steps (``None`` for unknown).
        unit: Unit shown after the rate, e.g. ``"img"`` or ``"B"``.

    Yields:
        A task with ``advance(n)`` and ``update(**fields)``.
    """
    if not enabled():
        yield _Task(None, None)
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    count = [DownloadColumn(), TransferSpeedColumn()] if unit == "B" else [MofNCompleteColumn()]
    columns = [TextColumn("{task.description}"), BarColumn(), *count,
               TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        yield _Task(progress, progress.add_task(description, total=total))
