"""``babyemo evaluate``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from babyemo.cli._common import cli_errors, runtime_options, say, stderr, stdout
from babyemo.cli.predict import FALLBACK_METAVAR, parse_no_face_fallback
from babyemo.config import NoFaceFallback
from babyemo.runtime import Runtime


@cli_errors
@runtime_options()
def evaluate_command(
    checkpoint: Path = typer.Option(None, "--checkpoint", help="A .pt file."),
    model: str = typer.Option(None, "--model", help="A trained model name (default: the "
                              "registry's default model)."),
    data: Path = typer.Option(None, "--data", help="Manifest (default: the one the model was "
                              "trained on, recorded in its checkpoint)."),
    split: str = typer.Option("test", "--split", help="train, val, test or all."),
    out: Path = typer.Option(None, "--out", help="Folder for report.json, confusion.csv/png, "
                             "predictions.csv, misclassified.png, reliability.png (and "
                             "slices.csv with --slice-by)."),
    bootstrap: int = typer.Option(0, "--bootstrap", min=0, metavar="N",
                                  help="95% bootstrap confidence intervals from N resamples "
                                  "(e.g. 1000)."),
    label_map: list[str] = typer.Option(
        None, "--label-map", metavar="MODEL=DATA",
        help="Cross-dataset evaluation: match a model class to a dataset label, e.g. "
        "crying=sad (either order; repeat or comma-separate). Rows whose label matches no "
        "model class are dropped and counted; predictions of model classes no dataset "
        "label maps to count as wrong."),
    slice_by: str = typer.Option(None, "--slice-by", metavar="COLUMN",
                                 help="Also report metrics per value of this metadata "
                                 "column (e.g. source)."),
    metadata: Path = typer.Option(None, "--metadata", help="Metadata CSV with a path column "
                                  "(default: the manifest's metadata.csv)."),
    where: list[str] = typer.Option(None, "--where", metavar="COLUMN=VALUE",
                                    help="Evaluate only rows whose metadata column has this "
                                    "value (repeatable; e.g. fer_subset=PrivateTest)."),
    faces: str = typer.Option("auto", "--faces", help="auto (crop faces as the model was "
                              "trained) or none (whole images: for datasets of face crops "
                              "such as FER-2013)."),
    no_face_fallback: NoFaceFallback = typer.Option(
        NoFaceFallback.whole_image, "--no-face-fallback", parser=parse_no_face_fallback,
        metavar=FALLBACK_METAVAR,
        help="For a model of face crops, the images without a face box in the manifest: "
        "whole_image: classify the whole image; error: no answer, counted as wrong in every "
        "metric."),
    record: bool = typer.Option(False, "--record", help="Store a summary of this evaluation "
                                "in the checkpoint (for `babyemo models card`)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    runtime: Runtime = None,
) -> None:
    """Evaluate a model on a split: metrics, confusion matrix, calibration (ECE), slices.

    Terminal tables, report.json, CSV and PNG files. Probabilities use the checkpoint's
    temperature; ECE is shown before (T=1) and after temperature scaling. --slice-by COLUMN
    adds metrics per value of a metadata column; --label-map evaluates on another dataset's
    labels.
    """
    from babyemo.data.loading.folders import check_outputs
    from babyemo.data.preparation.manifest import check_split

    check_split(split)  # before importing torch: a typo fails in well under a second
    check_outputs(folders={"--out": out})  # evaluate() also checks it against the data
    from babyemo.evaluation import evaluate
    from babyemo.metrics import BOOTSTRAP_METRICS

    report = evaluate(checkpoint, model=model, data=data, split=split, out=out, runtime=runtime,
                      bootstrap=bootstrap, label_map=label_map or None, slice_by=slice_by,
                      metadata=metadata, where=where or None, record=record, faces=faces,
                      no_face_fallback=no_face_fallback.value)
    if as_json:
        import json

        stdout.print_json(json.dumps(report.to_dict()))
        return
    m = report.metrics
    only = "".join(f", {c}={v}" for c, v in report.where.items())
    say(f"{report.checkpoint} on {report.manifest} ({report.manifest_source}), split "
        f"{split}{only}, n={m['n']}")
    if report.engine.get("tta"):
        say("test-time augmentation: mean of each image's and its mirror image's logits")
    if report.engine.get("backend", "torch") != "torch":
        _print_engine(report.engine)
    if report.label_map is not None:
        _print_label_map(report.label_map)
    if report.no_face is not None and report.no_face["n"]:
        _print_no_face(report.no_face, m["n"])
    stdout.print(f"accuracy {m['accuracy']:.3f}  balanced accuracy {m['balanced_accuracy']:.3f}"
                 f"  macro-F1 {m['macro_f1']:.3f}")
    ci = m.get("ci95")
    if ci:
        say("95% CI (bootstrap, " + str(m["bootstrap_resamples"]) + " resamples): " + "  ".join(
            f"{k.replace('_', ' ')} {ci[k][0]:.3f}-{ci[k][1]:.3f}" for k in BOOTSTRAP_METRICS))
    per_class_ci = (ci or {}).get("per_class")
    table = Table(title="per class")
    for col in ("class", "precision", "recall", "F1", "support"):
        table.add_column(col, justify="right")
    if per_class_ci:
        table.add_column("F1 95% CI", justify="right")
    for c in report.class_names:
        pc = m["per_class"][c]
        cells = [c, f"{pc['precision']:.3f}", f"{pc['recall']:.3f}", f"{pc['f1']:.3f}",
                 str(pc["support"])]
        if per_class_ci:
            lo, hi = per_class_ci[c]["f1"]
            cells.append(f"{lo:.3f}-{hi:.3f}")
        table.add_row(*cells)
    stdout.print(table)
    cm = Table(title="confusion matrix (rows = true, columns = predicted)")
    cm.add_column("true \\ pred")
    for c in report.class_names:
        cm.add_column(c, justify="right")
    for c, row in zip(report.class_names, report.confusion, strict=True):
        cm.add_row(c, *[str(v) for v in row])
    stdout.print(cm)
    _print_calibration(report.calibration)
    if report.slices is not None:
        _print_slices(report.slices)
    for kind, path in report.files.items():
        stdout.print(f"{kind}: {path}")


def _print_label_map(info: dict) -> None:
    pairs = ", ".join(f"{k}->{v}" for k, v in info["pairs"].items())
    say(f"label map (dataset -> model): {pairs}")
    dropped = ", ".join(f"{k} {v}" for k, v in info["dropped"].items()) or "none"
    say(f"kept {info['n_kept']} rows, dropped {info['n_dropped']} with labels no model class "
        f"matches ({dropped})")
    if info["outside_classes"]:
        say(f"{info['n_pred_outside']} prediction(s) of model classes outside the dataset's "
            f"labels ({', '.join(info['outside_classes'])}) count as wrong; macro-F1 averages "
            f"over {', '.join(info['evaluated_classes'])}")


def _print_no_face(info: dict, n: int) -> None:
    per_class = ", ".join(f"{c} {k}" for c, k in info["per_class"].items() if k)
    what = ("no answer, counted as wrong in every metric and left out of the confusion "
            "matrix and calibration (--no-face-fallback error)" if info["fallback"] == "error"
            else "classified whole (--no-face-fallback whole_image)")
    say(f"no face box in {info['n']} of {n} images ({per_class}): {what}")


def _print_calibration(cal: dict) -> None:
    how = (f"fitted on {cal['fitted_on']}" if cal["calibrated"]
           else "the checkpoint has no calibration")
    say(f"calibration: temperature {cal['temperature']:.3f} ({how}); ECE ({cal['n_bins']} bins) "
        f"{cal['ece_before']:.3f} at T=1, {cal['ece_after']:.3f} after scaling; NLL "
        f"{cal['nll_before']:.3f} -> {cal['nll_after']:.3f}")
    floor = cal.get("ece_if_calibrated")
    if floor:
        say(f"  a perfectly calibrated model with these confidences would show ECE "
            f"{floor['median']:.3f} ({floor['level']:.0%} {floor['low']:.3f}-{floor['high']:.3f}) "
            f"on these images by chance (consistency resampling)")
    for warning in cal.get("warnings", []):
        stderr.print(f"[yellow]Warning:[/yellow] {escape(warning)}")


def _print_slices(slices: dict) -> None:
    table = Table(title=f"per {slices['column']} (metadata {slices['metadata']})")
    cols = ["value", "n", "accuracy", "balanced acc.", "macro-F1", "ECE"]
    with_ci = all("ci95" in g for g in slices["groups"])
    if with_ci:
        cols.append("macro-F1 95% CI")
    for col in cols:
        table.add_column(col, justify="left" if col == "value" else "right")
    for g in slices["groups"]:
        row = [escape(str(g["value"])), str(g["n"]), f"{g['accuracy']:.3f}",
               f"{g['balanced_accuracy']:.3f}", f"{g['macro_f1']:.3f}", f"{g['ece']:.3f}"]
        if with_ci:
            lo, hi = g["ci95"]["macro_f1"]
            row.append(f"{lo:.3f}-{hi:.3f}")
        table.add_row(*row)
    stdout.print(table)


def _print_engine(engine: dict) -> None:
    say(f"backend: {engine['backend']} ({engine['precision']}) {engine.get('onnx', '')}")
    ev = engine.get("int8_eval")
    if ev:
        f32, i8 = ev["fp32_torch"], ev["int8_onnxruntime"]
        say(f"at export, on {ev['split']} (n={ev['n']}): fp32 torch accuracy "
            f"{f32['accuracy']:.3f} macro-F1 {f32['macro_f1']:.3f}; int8 accuracy "
            f"{i8['accuracy']:.3f} macro-F1 {i8['macro_f1']:.3f}; agreement "
            f"{ev['agreement']:.3f}")
