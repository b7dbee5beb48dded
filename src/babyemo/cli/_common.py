"""Shared CLI helpers: error handling and the two consoles (stdout results, stderr rest)."""

from __future__ import annotations

import functools
import os
import signal
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from babyemo.config import Backend
from babyemo.errors import BabyEmoError

stdout = Console(highlight=False, soft_wrap=True)
stderr = Console(stderr=True, highlight=False)

BACKEND_OPTION = typer.Option(Backend.torch, "--backend",
                              help="torch (the checkpoint's model) or onnxruntime (its export "
                              "from `babyemo export`, e.g. the int8 model; CPU).")
"""``--backend`` of the commands that run a model (``predict``, ``evaluate``)."""
ONNX_OPTION = typer.Option(None, "--onnx", help="The exported .onnx file for --backend "
                           "onnxruntime (default: <checkpoint stem>.onnx beside the "
                           "checkpoint, else <stem>.int8.onnx).")
"""``--onnx FILE`` beside :data:`BACKEND_OPTION`."""
TTA_OPTION = typer.Option(False, "--tta/--no-tta", help="Test-time augmentation: average "
                          "each image's logits with its mirror image's (2x compute).")
"""``--tta`` of the commands that run a model (``predict``, ``evaluate``)."""
STREAMS_OPTION = typer.Option(None, "--streams", min=1, metavar="N",
                              help="CPU streams: threads that each read and classify whole "
                              "batches on one core (default: one per core for the torch "
                              "engine on the CPU with 0 workers, else 1; 1 turns them off).")
"""``--streams N`` of ``predict`` and ``evaluate`` (see :func:`babyemo.devices.default_streams`)."""

F = TypeVar("F", bound=Callable[..., Any])


def say(text: str, console: Console = stdout) -> None:
    """Print plain text (no rich markup: file names may contain brackets)."""
    console.print(text, markup=False)


def print_error(error: BabyEmoError) -> None:
    """Print one red ``Error:`` line, with the hint, on stderr."""
    hint = f" [dim]({escape(error.hint)})[/dim]" if error.hint else ""
    stderr.print(f"[bold red]Error:[/bold red] {escape(error.message)}{hint}", soft_wrap=True)


def cli_errors(fn: F) -> F:
    """Decorate a command: a :class:`BabyEmoError` becomes an ``Error:`` line and exit 1.

    With ``--debug`` (``BABYEMO_DEBUG=1``) the exception propagates with its traceback.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except BabyEmoError as e:
            if os.environ.get("BABYEMO_DEBUG"):
                raise
            print_error(e)
            raise typer.Exit(1) from None
        except KeyboardInterrupt as e:
            raise typer.Exit(_interrupted(e)) from None

    return wrapper  # type: ignore[return-value]


class Terminated(KeyboardInterrupt):
    """SIGTERM (e.g. `kill PID`, a job scheduler's time limit), raised in the main thread
    like Ctrl-C's KeyboardInterrupt, so that the same clean-up runs: temporary files of
    atomic writes are removed, training says which epoch ``last.pt`` holds."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated()


def _interrupted(error: KeyboardInterrupt) -> int:
    """Say why the command stopped; the exit code (130 for Ctrl-C, 143 for SIGTERM, as a
    shell reports a process killed by these signals)."""
    if isinstance(error, Terminated):
        stderr.print("[yellow]Terminated.[/yellow]")
        return 128 + signal.SIGTERM
    stderr.print("[yellow]Interrupted.[/yellow]")
    return 128 + signal.SIGINT


def run_cli(app: Any) -> None:
    """Run the Typer app as the console script: Ctrl-C exits 130, SIGTERM 143, each after
    the clean-up of whatever was running (see :class:`Terminated`)."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        app()
    except KeyboardInterrupt as e:
        sys.exit(_interrupted(e))
