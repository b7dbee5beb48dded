"""``babyemo predict``."""

from __future__ import annotations

from pathlib import Path

import typer

from babyemo.cli._common import (
    BACKEND_OPTION,
    ONNX_OPTION,
    STREAMS_OPTION,
    TTA_OPTION,
    cli_errors,
    say,
    stderr,
    stdout,
)
from babyemo.config import Backend, NoFaceFallback, Precision


@cli_errors
def predict_command(
    inputs: list[Path] = typer.Argument(..., help="Image files and/or folders."),
    checkpoint: Path = typer.Option(None, "--checkpoint", help="A .pt file."),
    model: str = typer.Option(None, "--model", help="A trained model name (default: the "
                              "registry's default model)."),
    csv_out: str = typer.Option(None, "--csv", help="CSV file to write, or - for stdout "
                                "(the default when neither --csv nor --json is given)."),
    json_out: Path = typer.Option(None, "--json", help="JSON file to write."),
    recursive: bool = typer.Option(True, "--recursive/--no-recursive",
                                   help="Search sub-folders."),
    strict: bool = typer.Option(False, "--strict", help="Exit 1 if any file failed."),
    device: str = typer.Option("auto", "--device"),
    precision: Precision = typer.Option(Precision.auto, "--precision"),
    batch_size: int = typer.Option(32, "--batch-size", min=1),
    workers: int = typer.Option(None, "--workers", min=0),
    streams: int = STREAMS_OPTION,
    faces: str = typer.Option("auto", "--faces", help="auto (as the model was trained), none "
                              "(whole images), or a face detector: yunet."),
    no_face_fallback: NoFaceFallback = typer.Option(NoFaceFallback.error, "--no-face-fallback",
                                         help="error: a photo without a face is a row with "
                                         "error=no_face; full: classify it whole."),
    save_crops: Path = typer.Option(None, "--save-crops", help="Write each face crop as PNG "
                                    "into this folder (off by default: privacy)."),
    min_confidence: float = typer.Option(None, "--min-confidence", min=0.0, max=1.0,
                                         metavar="P",
                                         help="Label rows whose top probability is below P "
                                         "(0-1) 'uncertain'; the most probable class goes "
                                         "to a top_class column."),
    backend: Backend = BACKEND_OPTION,
    onnx: Path = ONNX_OPTION,
    tta: bool = TTA_OPTION,
) -> None:
    """Predict the emotion of every image in files/folders (CSV: path, label, confidence,
    prob_<class>..., error)."""
    import sys

    from babyemo.prediction import Predictor, predict_to_files

    predictor = Predictor(checkpoint, model=model, device=device, precision=precision,
                          batch_size=batch_size, num_workers=workers, faces=faces,
                          no_face_fallback=no_face_fallback.value, save_crops=save_crops,
                          min_confidence=min_confidence, backend=backend.value, onnx=onnx,
                          tta=tta, streams=streams)
    to_stdout = csv_out == "-" or (csv_out is None and json_out is None)
    summary = predict_to_files(inputs, predictor,
                               csv_out=sys.stdout if to_stdout else csv_out,
                               json_out=json_out, recursive=recursive)
    report = stderr if to_stdout else stdout
    counts = ", ".join(f"{k} {v}" for k, v in summary.label_counts.items()) or "none"
    say(f"{summary.n_files} files, {summary.n_rows} rows ({counts}), {summary.n_failed} "
        f"failed, {summary.n_hidden_skipped} hidden skipped; {summary.seconds:.1f}s "
        f"({summary.images_per_s:.1f} img/s)", report)
    if predictor.face_mode is not None:
        fallback = ("classified whole" if predictor.face_mode.fallback == "full"
                    else "error=no_face")
        say(f"faces ({predictor.face_mode.detector}): {summary.n_no_face} files without a face "
            f"({fallback}), {summary.n_multi_face} with several; detection "
            f"{summary.detect_seconds:.1f}s", report)
    if backend is not Backend.torch:
        say(f"backend: {predictor.engine.describe()}", report)
    if csv_out and not to_stdout:
        say(f"csv: {csv_out}", report)
    if json_out:
        say(f"json: {json_out}", report)
    if strict and summary.n_failed:
        stderr.print(f"[bold red]Error:[/bold red] {summary.n_failed} file(s) failed (--strict).")
        raise typer.Exit(1)
