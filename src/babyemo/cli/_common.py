"""Shared CLI helpers: error handling, the two consoles (stdout results, stderr rest) and
the one group of runtime options (:func:`runtime_options`)."""

from __future__ import annotations

import functools
import inspect
import os
import signal
import sys
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from babyemo.config import Backend, Precision
from babyemo.errors import BabyEmoError
from babyemo.runtime import Runtime

stdout = Console(highlight=False, soft_wrap=True)
stderr = Console(stderr=True, highlight=False)

F = TypeVar("F", bound=Callable[..., Any])

_RUNTIME = Runtime()
_KW = inspect.Parameter.KEYWORD_ONLY


def _runtime_parameters(batch_size: int, backends: bool) -> list[inspect.Parameter]:
    """The options of a :class:`~babyemo.runtime.Runtime`, defaults from the API's."""
    params = [
        ("device", str, typer.Option(_RUNTIME.device, "--device",
                                     help="auto, cpu, cuda, cuda:N or mps.")),
        ("precision", Precision, typer.Option(_RUNTIME.precision, "--precision",
                                              help="auto: bf16 where the hardware has it, "
                                              "else fp32.")),
        ("batch_size", int, typer.Option(batch_size, "--batch-size", min=1,
                                         help="Images per forward pass.")),
        ("workers", int | None, typer.Option(_RUNTIME.workers, "--workers", min=0,
                                             help="DataLoader worker processes that read "
                                             "images (default: 0 on a CPU with up to 4 "
                                             "cores).")),
        ("readers", int | None, typer.Option(
            _RUNTIME.readers, "--readers", min=1, metavar="N",
            help="Parallel readers on the CPU: threads that each read and classify whole "
            "batches on one core (default: one per core for the torch engine on the CPU "
            "with 0 workers, else 1; 1 turns them off).")),
        ("streams", int | None, typer.Option(None, "--streams", min=1, hidden=True,
                                             help="Old name of --readers.")),
    ]
    if backends:
        params += [
            ("backend", Backend, typer.Option(
                _RUNTIME.backend, "--backend", help="torch (the checkpoint's model) or "
                "onnxruntime (its export from `babyemo export`, e.g. the int8 model; CPU).")),
            ("onnx", Path | None, typer.Option(
                _RUNTIME.onnx, "--onnx", help="The exported .onnx file for --backend "
                "onnxruntime (default: <checkpoint stem>.onnx beside the checkpoint, else "
                "<stem>.int8.onnx).")),
            ("tta", bool, typer.Option(
                _RUNTIME.tta, "--tta/--no-tta", help="Test-time augmentation: average "
                "each image's logits with its mirror image's (2x compute).")),
        ]
    return [inspect.Parameter(name, _KW, default=default, annotation=annotation)
            for name, annotation, default in params]


def runtime_options(*, batch_size: int = _RUNTIME.batch_size,
                    backends: bool = True) -> Callable[[F], F]:
    """Give a command the one group of runtime options, and a ``runtime`` argument.

    The decorated command declares a ``runtime: Runtime`` parameter; its CLI gets
    ``--device``, ``--precision``, ``--batch-size``, ``--workers``, ``--readers`` (and the
    hidden old name ``--streams``) and, with ``backends``, ``--backend``, ``--onnx``,
    ``--tta``, all with the API's defaults (:class:`~babyemo.runtime.Runtime`; a
    command may choose another default batch size). They are parsed into one
    :class:`~babyemo.runtime.Runtime` before the command runs.
    """

    def decorate(fn: F) -> F:
        hints = typing.get_type_hints(fn)
        signature = inspect.signature(fn)
        own = [p.replace(annotation=hints.get(p.name, p.annotation))
               for p in signature.parameters.values() if p.name != "runtime"]
        extra = _runtime_parameters(batch_size, backends)
        names = [p.name for p in extra]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            values = {name: kwargs.pop(name) for name in names}
            kwargs["runtime"] = _runtime_from(values)
            return fn(*args, **kwargs)

        wrapper.__signature__ = signature.replace(parameters=own + extra)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {**{p.name: p.annotation for p in own + extra},
                                   "return": hints.get("return")}
        return wrapper  # type: ignore[return-value]

    return decorate


def _runtime_from(values: dict[str, Any]) -> Runtime:
    streams = values.pop("streams")
    if streams is not None:
        if values["readers"] is not None and values["readers"] != streams:
            raise typer.BadParameter("give --readers (or its old name --streams) once.")
        values["readers"] = streams
    if values.get("onnx") is not None:
        values["onnx"] = str(values["onnx"])
    return Runtime(**values)




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
