"""``babyemo calibrate``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from babyemo.cli._common import cli_errors, runtime_options, say, stderr, stdout
from babyemo.runtime import Runtime


@cli_errors
@runtime_options(backends=False)
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
    dry_run: bool = typer.Option(False, "--dry-run", help="Fit and report, do not write."),
    copy_from: Path = typer.Option(None, "--copy-from", help="Copy the temperature of this "
                                   "calibrated checkpoint instead of fitting (e.g. from the "
                                   "same recipe trained on train only, for a train+val model)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    runtime: Runtime = None,
) -> None:
    """Fit temperature scaling on a held-out split and store it in the checkpoint.

    predict and evaluate then use calibrated probabilities, softmax(logits / T). Training
    already does this on the val split; use it for older checkpoints or other data.
    """
    from babyemo.data.preparation.manifest import check_split

    check_split(split, allow_all=False)  # before importing torch
    from babyemo.evaluation.calibration import calibrate_checkpoint, copy_calibration

    if copy_from is not None:
        entry = copy_calibration(copy_from, checkpoint, model=model)
        say(f"temperature {entry['temperature']:.4f} (fitted on {entry.get('fitted_on')} of "
            f"{copy_from}) written to {entry['written_to']}")
        if entry.get("copy_name"):
            say(f"(the target is packaged with babyemo and read-only: the calibrated copy is "
                f"registered as '{entry['copy_name']}'; see `babyemo models list`)")
        return
    result = calibrate_checkpoint(checkpoint, model=model, data=data, split=split,
                                  runtime=runtime, write=not dry_run)
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
