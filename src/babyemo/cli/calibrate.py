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
    oof: Path = typer.Option(None, "--oof", metavar="RUN", help="Fit on the out-of-fold "
                             "logits of this `babyemo train --folds K` run of the same recipe "
                             "instead of a split (for a model trained on train+val: every "
                             "non-test image held out once)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    runtime: Runtime = None,
) -> None:
    """Fit temperature scaling on held-out images and store it in the checkpoint.

    The images: a held-out split (--split), or every non-test image of a cross-validation
    run of the same recipe (--oof, for a model trained on train+val).

    predict and evaluate then use calibrated probabilities, softmax(logits / T). Training
    already does this on the val split; use it for older checkpoints or other data.
    """
    from babyemo.data.preparation.manifest import check_split

    check_split(split, allow_all=False)  # before importing torch
    if oof is not None and (copy_from is not None or data is not None or split != "val"):
        raise typer.BadParameter("--oof fits on the run's out-of-fold logits: give it without "
                                 "--copy-from, --data and --split")
    from babyemo.evaluation.calibration import (
        calibrate_checkpoint,
        calibrate_from_oof,
        copy_calibration,
    )

    if copy_from is not None:
        entry = copy_calibration(copy_from, checkpoint, model=model)
        say(f"temperature {entry['temperature']:.4f} (fitted on {entry.get('fitted_on')} of "
            f"{copy_from}) written to {entry['written_to']}")
        if entry.get("copy_name"):
            say(f"(the target is packaged with babyemo and read-only: the calibrated copy is "
                f"registered as '{entry['copy_name']}'; see `babyemo models list`)")
        return
    if oof is not None:
        result = calibrate_from_oof(oof, checkpoint, model=model, write=not dry_run)
    else:
        result = calibrate_checkpoint(checkpoint, model=model, data=data, split=split,
                                      runtime=runtime, write=not dry_run)
    if as_json:
        import json

        stdout.print_json(json.dumps({**result.to_dict(), "checkpoint": (
            str(result.checkpoint) if result.checkpoint else None),
            "manifest": str(result.manifest) if result.manifest else None,
            "manifest_source": result.manifest_source,
            "oof_run": str(oof) if oof is not None else None,
            "warnings": result.warnings, "copy_name": result.copy_name}))
        return
    source = (f"the out-of-fold logits of {oof}" if oof is not None
              else f"{result.fitted_on} of {result.manifest} ({result.manifest_source})")
    say(f"temperature {result.temperature:.4f} fitted on {source} (n={result.n})")
    say(f"ECE ({result.n_bins} bins) {result.ece_before:.4f} -> {result.ece_after:.4f}; "
        f"NLL {result.nll_before:.4f} -> {result.nll_after:.4f}")
    say(f"written to {result.checkpoint}" if result.checkpoint else "not written (--dry-run)")
    if result.copy_name:
        say(f"(the packaged model is read-only: this calibrated copy is registered as "
            f"'{result.copy_name}'; use --model {result.copy_name}, or make it the default "
            f"with `babyemo models default {result.copy_name}`)")
    for warning in result.warnings:
        stderr.print(f"[yellow]Warning:[/yellow] {escape(warning)}")
