"""``babyemo evaluate``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from babyemo.cli._common import cli_errors, say, stdout
from babyemo.config import Precision


@cli_errors
def evaluate_command(
    checkpoint: Path = typer.Option(None, "--checkpoint", help="A .pt file."),
    model: str = typer.Option(None, "--model", help="A trained model name (default: the "
                              "registry's default model)."),
    data: Path = typer.Option(None, "--data", help="Manifest (default: last prepared)."),
    split: str = typer.Option("test", "--split", help="train, val, test or all."),
    out: Path = typer.Option(None, "--out", help="Folder for report.json, confusion.csv/png, "
                             "predictions.csv and misclassified.png."),
    device: str = typer.Option("auto", "--device"),
    precision: Precision = typer.Option(Precision.auto, "--precision"),
    batch_size: int = typer.Option(64, "--batch-size", min=1),
    bootstrap: int = typer.Option(0, "--bootstrap", min=0, metavar="N",
                                  help="95% bootstrap confidence intervals from N resamples "
                                  "(e.g. 1000)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Evaluate a model on a split: metrics and confusion matrix (terminal, CSV, PNG)."""
    from babyemo.evaluation import evaluate

    report = evaluate(checkpoint, model=model, data=data, split=split, out=out, device=device,
                      precision=precision, batch_size=batch_size, bootstrap=bootstrap)
    if as_json:
        import json

        stdout.print_json(json.dumps(report.to_dict()))
        return
    m = report.metrics
    say(f"{report.checkpoint} on {report.manifest}, split {split}, n={m['n']}")
    stdout.print(f"accuracy {m['accuracy']:.3f}  balanced accuracy {m['balanced_accuracy']:.3f}"
                 f"  macro-F1 {m['macro_f1']:.3f}")
    ci = m.get("ci95")
    if ci:
        say("95% CI (bootstrap, " + str(m["bootstrap_resamples"]) + " resamples): " + "  ".join(
            f"{k.replace('_', ' ')} {lo:.3f}-{hi:.3f}" for k, (lo, hi) in ci.items()))
    table = Table(title="per class")
    for col in ("class", "precision", "recall", "F1", "support"):
        table.add_column(col, justify="right")
    for c in report.class_names:
        pc = m["per_class"][c]
        table.add_row(c, f"{pc['precision']:.3f}", f"{pc['recall']:.3f}", f"{pc['f1']:.3f}",
                      str(pc["support"]))
    stdout.print(table)
    cm = Table(title="confusion matrix (rows = true, columns = predicted)")
    cm.add_column("true \\ pred")
    for c in report.class_names:
        cm.add_column(c, justify="right")
    for c, row in zip(report.class_names, report.confusion, strict=True):
        cm.add_row(c, *[str(v) for v in row])
    stdout.print(cm)
    for kind, path in report.files.items():
        stdout.print(f"{kind}: {path}")
