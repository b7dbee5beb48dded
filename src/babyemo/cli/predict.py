"""``babyemo predict``."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from babyemo.cli._common import cli_errors, runtime_options, say, stderr, stdout
from babyemo.config import Backend, NoFaceFallback
from babyemo.runtime import PREDICT_BATCH_SIZE, Runtime

if TYPE_CHECKING:
    from babyemo.data.loading.folders import FoundFiles
    from babyemo.prediction import Predictor, PredictResult


FALLBACK_METAVAR = "<whole_image|error>"
"""The values ``--no-face-fallback`` shows (``full``, the old name of ``whole_image``, is
accepted but not shown)."""


def parse_no_face_fallback(value: str | NoFaceFallback) -> NoFaceFallback:
    """``--no-face-fallback``'s value: ``whole_image``, ``error``, or the deprecated ``full``
    (= ``whole_image``).

    Raises:
        typer.BadParameter: Any other value (a usage error, exit 2).
    """
    if isinstance(value, NoFaceFallback):
        return value
    try:
        return NoFaceFallback(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not one of 'whole_image', 'error'.") from None


@cli_errors
@runtime_options(batch_size=PREDICT_BATCH_SIZE)
def predict_command(
    inputs: list[Path] = typer.Argument(..., help="Image files and/or folders."),
    checkpoint: Path = typer.Option(None, "--checkpoint", help="A .pt file."),
    model: str = typer.Option(None, "--model", help="A trained model name (default: the "
                              "registry's default model)."),
    csv_out: str = typer.Option(None, "--csv", help="CSV file to write, or - for stdout "
                                "(the default when neither --csv nor --json is given)."),
    json_out: str = typer.Option(None, "--json", help="JSON file to write, or - for stdout."),
    recursive: bool = typer.Option(True, "--recursive/--no-recursive",
                                   help="Search sub-folders."),
    all_files: bool = typer.Option(False, "--all-files", help="In folders, try every file, "
                                   "not only those named like images (.jpg, .png, .webp, "
                                   ".heic...); files named on the command line are always "
                                   "tried."),
    strict: bool = typer.Option(False, "--strict", help="Exit 1 if any file could not be "
                                "read (photos without a face do not count)."),
    faces: str = typer.Option("auto", "--faces", help="auto (as the model was trained), none "
                              "(whole images), or a face detector: yunet."),
    no_face_fallback: NoFaceFallback = typer.Option(
        NoFaceFallback.whole_image, "--no-face-fallback", parser=parse_no_face_fallback,
        metavar=FALLBACK_METAVAR,
        help="With face detection, a photo in which no face is found: whole_image: classify "
        "the whole photo (its row says face=whole_image); error: no answer, a row with "
        "error=no_face."),
    save_crops: Path = typer.Option(None, "--save-crops", help="Write each face crop as PNG "
                                    "into this folder (off by default: privacy)."),
    min_confidence: float = typer.Option(None, "--min-confidence", min=0.0, max=1.0,
                                         metavar="P",
                                         help="Label rows whose top probability is below P "
                                         "(0-1) 'uncertain'; the most probable class goes "
                                         "to a top_class column."),
    runtime: Runtime = None,
) -> None:
    """Predict the emotion of every image in files/folders (CSV: path, label, confidence,
    prob_<class>..., face, error, error_detail)."""
    import sys
    import time

    csv_stdout = csv_out == "-" or (csv_out is None and json_out is None)
    json_stdout = json_out == "-"
    to_stdout = csv_stdout or json_stdout
    if csv_stdout and json_stdout:
        from babyemo.errors import ConfigError

        raise ConfigError("--csv and --json both write to stdout (-).",
                          "write one of them to a file")
    found = _check_arguments(inputs, recursive, all_files, None if csv_stdout else csv_out,
                             None if json_stdout else json_out, save_crops, checkpoint,
                             model, faces, runtime.onnx)
    start = time.perf_counter()

    from babyemo.prediction import Predictor, predict_to_files  # imports torch: seconds

    predictor = Predictor(checkpoint, model=model, runtime=runtime, faces=faces,
                          no_face_fallback=no_face_fallback.value, save_crops=save_crops,
                          min_confidence=min_confidence)
    load_seconds = time.perf_counter() - start
    summary = predict_to_files(found, predictor,
                               csv_out=sys.stdout if csv_stdout else csv_out,
                               json_out=sys.stdout if json_stdout else json_out)
    report = stderr if to_stdout else stdout
    for line in summary_lines(summary, predictor, load_seconds):
        _say_wrapped(line, report)
    if runtime.backend is not Backend.torch:
        say(f"backend: {predictor.model.engine.describe()}", report)
    if csv_out and not csv_stdout:
        say(f"csv: {csv_out}", report)
    if json_out and not json_stdout:
        say(f"json: {json_out}", report)
    if strict and summary.n_errors:
        stderr.print(f"[bold red]Error:[/bold red] {_n(summary.n_errors, 'file')} could not "
                     "be read (--strict).")
        raise typer.Exit(1)


def _check_arguments(inputs: list[Path], recursive: bool, all_files: bool,
                     csv_out: str | None, json_out: str | None, save_crops: Path | None,
                     checkpoint: Path | None, model: str | None, faces: str,
                     onnx: Path | None = None) -> FoundFiles:
    """What can be checked without loading torch, the model or the face detector: the
    inputs exist and hold files, the outputs can be written and replace none of the
    inputs, the model and detector names are known. Returns the files found.

    Raises:
        DataError: See :func:`~babyemo.data.loading.folders.collect_input_files`.
        ConfigError: See :func:`~babyemo.data.loading.folders.check_outputs`.
        RegistryError: Unknown model or face detector name, or no model at all.
        CheckpointError: The checkpoint file does not exist.
    """
    from babyemo.data.loading.folders import check_outputs, collect_input_files
    from babyemo.errors import CheckpointError, unknown_name
    from babyemo.faces.registry import list_detectors
    from babyemo.models.store import resolve_checkpoint

    found = collect_input_files(inputs, recursive=recursive, all_files=all_files)
    path = resolve_checkpoint(checkpoint, model)
    check_outputs({"--csv": csv_out, "--json": json_out}, {"--save-crops": save_crops},
                  inputs=[*found.files, path, onnx], scanned=found.folders)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint not found: {path}",
                              "pass a .pt file written by `babyemo train`")
    detectors = [d.name for d in list_detectors()]
    if faces not in ("auto", "none", *detectors):
        raise unknown_name("face detector", faces, ["auto", *detectors])
    return found


def _n(count: int, word: str, plural: str | None = None) -> str:
    """``"1 file"``, ``"2 files"``."""
    return f"{count:,} {word if count == 1 else (plural or word + 's')}"


def summary_lines(summary: PredictResult, predictor: Predictor,
                  load_seconds: float | None = None) -> list[str]:
    """The end-of-run summary of ``babyemo predict``, one line per topic.

    Times: the run's wall time (``summary.seconds``) after the wall time of loading the
    model (``load_seconds``, by default ``summary.load_seconds``; the CLI includes importing
    torch); face detection is thread time summed over the parallel readers, so it is given
    with its share of their time, never as a part of the wall time.
    """
    load = summary.load_seconds if load_seconds is None else load_seconds
    lines = [f"{_n(summary.n_files, 'file')}, {_n(summary.n_rows, 'row')} in "
             f"{summary.seconds:.1f} s ({summary.images_per_s:.1f} files/s), after "
             f"{load:.1f} s loading the model"]
    counts = ", ".join(f"{k} {v:,}" for k, v in summary.label_counts.items()) or "none"
    lines.append(f"labels: {counts}")
    mode = predictor.face_detection
    if mode is not None:
        with_face = summary.n_files - summary.n_errors - summary.n_no_face
        lines.append(f"faces ({mode.detector}): {_n(with_face, 'photo')} with a face, "
                     f"{summary.n_multi_face:,} of them with several")
        if summary.n_no_face:
            what = ("rows with error=no_face (no answer; --no-face-fallback error), not "
                    "counted as errors" if NoFaceFallback(mode.fallback) is NoFaceFallback.error
                    else "classified whole, rows with face=whole_image")
            lines.append(f"no face found in {_n(summary.n_no_face, 'photo')}: {what}")
        readers = summary.parallel_readers
        if readers > 1:
            kind = "readers" if predictor.model.readers > 1 else "worker processes"
            lines.append(f"face detection: {summary.detect_seconds:.1f} s summed over "
                         f"{readers} parallel {kind} ({summary.detect_share:.0%} of their "
                         "time)")
        else:
            lines.append(f"face detection: {summary.detect_seconds:.1f} s "
                         f"({summary.detect_share:.0%} of the time)")
    if summary.n_errors:
        codes = ", ".join(f"{code} {n:,}" for code, n in summary.error_counts.items()
                          if code != "no_face")
        lines.append(f"errors: {_n(summary.n_errors, 'file')} could not be read ({codes})")
    else:
        lines.append("errors: none (every file could be read)")
    skipped = []
    if summary.n_non_image_skipped:
        skipped.append(f"{_n(summary.n_non_image_skipped, 'non-image file')} "
                       "(--all-files tries them)")
    if summary.n_hidden_skipped:
        skipped.append(_n(summary.n_hidden_skipped, "hidden entry", "hidden entries"))
    if skipped:
        lines.append("skipped: " + ", ".join(skipped))
    return lines


def _say_wrapped(text: str, console: Console) -> None:
    """Print ``text`` wrapped at the console's width between words (never inside one: a
    path or a code stays whole), continuation lines indented by two spaces."""
    for line in textwrap.wrap(text, width=max(40, console.width), subsequent_indent="  ",
                              break_long_words=False, break_on_hyphens=False):
        say(line, console)
