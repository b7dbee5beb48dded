"""``babyemo calibrate``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from babyemo.cli._common import cli_errors, say, stderr, stdout
from babyemo.config import Precision


@cli_errors
def calibrate_command(
    checkpoint: Path = typer.Option(None, "--checkpoint", help="A .pt file (rewritten in "
                                    "place, atomically; a packaged model is never rewritten: "
                                    "a calibrated copy is registered instead)."),
    model: str = typer.Option(None, "--model", help="A trained model name (default: the "
                              "registry's default model)."),
    data: Path = typer.Option(None, "--data", help="Manifest (default: the one the model was "
                              "trained on, recorded in its checkpoint)."),
    split: str = typer.Option("val", "--split", help="Held-out split to fit on: val (never "
                              "the split you report on)."),
    device: str = typer.Option("auto", "--device"),
    precision: Precision = typer.Option(Precision.auto, "--precision"),
    batch_size: int = typer.Option(64, "--batch-size", min=1),
    dry_run: bool = typer.Option(False, "--dry-run", help="Fit and report, do not write."),
    copy_from: Path = typer.Option(None, "--copy-from", help="Copy the temperature of this "
                                   "calibrated checkpoint instead of fitting (e.g. from the "
                                   "same recipe trained on train only, for a train+val model)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Fit temperature scaling on a held-out split and store it in the checkpoint.

    predict and evaluate then use calibrated probabilities, softmax(logits / T). Training
    already does this on the val split; use it for older checkpoints or other data.
    """
    from babyemo.data.manifest import check_split

    check_split(split, allow_all=False)  # before importing torch
    from babyemo.calibration import calibrate_checkpoint

    if copy_from is not None:
        from babyemo.calibration import copy_calibration
        from babyemo.models.store import resolve_checkpoint

        target = resolve_checkpoint(checkpoint, model)
        entry = copy_calibration(copy_from, target)
        say(f"temperature {entry['temperature']:.4f} (fitted on {entry.get('fitted_on')} of "
            f"{copy_from}) written to {entry['written_to']}")
        if Path(entry["written_to"]) != Path(target):
            say(f"({target.name} is packaged with babyemo and read-only: the calibrated copy "
                "is registered as a trained model; see `babyemo models list`)")
        return
    result = calibrate_checkpoint(checkpoint, model=model, data=data, split=split,
                                  device=device, precision=precision, batch_size=batch_size,
                                  write=not dry_run)
    if as_json:
        import json

        stdout.print_json(json.dumps({**result.to_dict(), "checkpoint": (
            str(result.checkpoint) if result.checkpoint else None),
            "manifest": str(result.manifest), "manifest_source": result.manifest_source,
            "warnings": result.warnings, "copy_name": result.copy_name}))
        return
    say(f"temperature {result.temperature:.4f} fitted on {result.fitted_on} (n={result.n}) of "
        f"{result.manifest} ({result.manifest_source})")
    say(f"ECE ({result.n_bins} bins) {result.ece_before:.4f} -> {result.ece_after:.4f}; "
        f"NLL {result.nll_before:.4f} -> {result.nll_after:.4f}")
    say(f"written to {result.checkpoint}" if result.checkpoint else "not written (--dry-run)")
    if result.copy_name:
        say(f"(the packaged model is read-only: this calibrated copy is registered as "
            f"'{result.copy_name}'; use --model {result.copy_name}, or make it the default "
            f"with `babyemo models default {result.copy_name}`)")
    for warning in result.warnings:
        stderr.print(f"[yellow]Warning:[/yellow] {escape(warning)}")
