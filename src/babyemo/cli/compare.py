"""``babyemo compare`` (no torch: it reads two CSV files)."""

from __future__ import annotations

from pathlib import Path

import typer

from babyemo.cli._common import cli_errors, say, stdout

_LABELS = {"macro_f1": "macro-F1", "balanced_accuracy": "balanced accuracy",
           "accuracy": "accuracy"}


@cli_errors
def compare_command(
    a: Path = typer.Argument(..., metavar="A", help="Predictions of A: an oof.csv or "
                             "predictions.csv, or a folder holding one (a `train --folds` "
                             "run, an `evaluate --out` folder)."),
    b: Path = typer.Argument(..., metavar="B", help="Predictions of B on the same images."),
    bootstrap: int = typer.Option(1000, "--bootstrap", min=100, metavar="N",
                                  help="Paired bootstrap resamples."),
    seed: int = typer.Option(0, "--seed", help="Seed of the resampling."),
    json_out: str = typer.Option(None, "--json", metavar="FILE",
                                 help="Also write the comparison as JSON to FILE (- for "
                                 "stdout, instead of the table)."),
) -> None:
    """Compare two models on the same images: B - A with a paired bootstrap 95% CI.

    A and B are prediction files with a true label per image (paired by path): the
    oof.csv of two `train --folds` runs on one manifest, or the predictions.csv of two
    `evaluate --out` on one split. The verdict is on macro-F1: "B better" or "A better"
    when the interval of B - A excludes 0, else "no difference the data can show".
    """
    from babyemo.data.loading.folders import check_outputs

    to_stdout = json_out == "-"
    check_outputs({"--json": None if to_stdout else json_out}, inputs=[a, b])
    from babyemo.evaluation.compare import PRIMARY_METRIC, compare_predictions

    result = compare_predictions(a, b, n_bootstrap=bootstrap, seed=seed)
    if json_out is not None:
        import json

        from babyemo import reports

        if to_stdout:
            stdout.print_json(json.dumps(result.to_dict()))
            return
        reports.write_json(result.to_dict(), json_out)
    say(f"A: {result.a}")
    say(f"B: {result.b}")
    say(f"{result.n} images paired by path; A and B agree on {result.agreement:.1%}; "
        f"{result.n_bootstrap} paired bootstrap resamples")
    width = max(len(v) for v in _LABELS.values())
    level = f"{result.level:.0%} CI"
    say(f"{'':{width}}  {'A':>6}  {'B':>6}  {'B - A':>7}  {level:>18}")
    for key, label in _LABELS.items():
        m = result.metrics[key]
        lo, hi = m["ci"]
        say(f"{label:{width}}  {m['a']:6.3f}  {m['b']:6.3f}  {m['difference']:+7.3f}  "
            f"[{lo:+.3f}, {hi:+.3f}]")
    say(f"verdict ({_LABELS[PRIMARY_METRIC]}): {result.verdict}")
    if json_out is not None:
        say(f"json: {json_out}")
