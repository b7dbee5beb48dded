"""``babyemo export``."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from babyemo.cli._common import cli_errors, say, stderr


class ExportFormat(str, Enum):
    """Formats of ``babyemo export``."""

    onnx = "onnx"


@cli_errors
def export_command(
    checkpoint: Path = typer.Argument(..., help="A .pt file written by `babyemo train`."),
    fmt: ExportFormat = typer.Option(ExportFormat.onnx, "--format",
                                     help="onnx: for ONNX Runtime (`--backend onnxruntime`)."),
    out: Path = typer.Option(None, "--out", help="The fp32 .onnx file (default: <checkpoint "
                             "stem>.onnx beside the checkpoint); the int8 model is written "
                             "beside it as <name>.int8.onnx."),
    int8: bool = typer.Option(False, "--int8", help="Also write a static int8 model, "
                              "calibrated on real images of the training split, and compare "
                              "it with the fp32 model on the val split."),
    quantization_data: Path = typer.Option(None, "--quantization-data", metavar="MANIFEST",
                                           help="Manifest whose train split gives the int8 "
                                           "quantization sample (default: the one the "
                                           "checkpoint was trained on)."),
    quantization_images: int = typer.Option(200, "--quantization-images", min=1, metavar="N",
                                            help="Training images in the int8 quantization "
                                            "sample (a seeded sample)."),
    calibration_data: Path = typer.Option(None, "--calibration-data", hidden=True,
                                          help="Old name of --quantization-data."),
    calibration_images: int = typer.Option(None, "--calibration-images", min=1, hidden=True,
                                           help="Old name of --quantization-images."),
    seed: int = typer.Option(0, "--seed", help="Seed of the quantization sample."),
) -> None:
    """Export a checkpoint for ONNX Runtime (needs `pip install 'babyemo[onnx]'`).

    Writes <stem>.onnx (fp32, checked against torch) and with --int8 <stem>.int8.onnx, both
    carrying the class names and preprocessing; then `babyemo predict --backend
    onnxruntime` and `babyemo evaluate --backend onnxruntime` use them.
    """
    from babyemo.data.loading.folders import check_outputs

    quantization_data = _one_of("--quantization-data", quantization_data, calibration_data)
    if calibration_images is not None:
        if quantization_images != 200 and quantization_images != calibration_images:
            raise typer.BadParameter("give --quantization-images (or its old name "
                                     "--calibration-images) once.")
        quantization_images = calibration_images
    # before importing torch; export() checks the int8 file too
    check_outputs({"--out": out}, inputs=[checkpoint, quantization_data])
    from babyemo.export import MAX_F1_DROP, export

    result = export(checkpoint, format=fmt.value, out=out, int8=int8,
                    quantization_data=quantization_data,
                    quantization_images=quantization_images, seed=seed)
    say(f"{fmt.value} fp32: {result.onnx} (onnxruntime vs torch fp32 logits: max |diff| "
        f"{result.max_abs_diff:.2g}, tolerance {result.tolerance:.2g})")
    if result.int8 is not None and result.quantization is not None:
        sample = result.quantization
        say(f"{fmt.value} int8: {result.int8} (quantized on {sample['n_images']} images of "
            f"the train split of {sample['manifest']}, seed {sample['seed']})")
    ev = result.int8_eval
    if ev:
        f32, i8 = ev["fp32_torch"], ev["int8_onnxruntime"]
        say(f"on {ev['split']} (n={ev['n']}): accuracy fp32 {f32['accuracy']:.3f} / int8 "
            f"{i8['accuracy']:.3f}; macro-F1 fp32 {f32['macro_f1']:.3f} / int8 "
            f"{i8['macro_f1']:.3f}; same label {ev['agreement']:.1%}")
        if not result.int8_within_tolerance:
            stderr.print(f"[yellow]Warning:[/yellow] int8 macro-F1 is "
                         f"{100 * ev['macro_f1_drop']:.1f} points below fp32 on {ev['split']} "
                         f"(more than {100 * MAX_F1_DROP:.0f}): prefer {result.onnx.name} or "
                         "the torch backend.", markup=True, highlight=False)
    elif int8:
        stderr.print("[yellow]Warning:[/yellow] int8 was not compared with fp32 (the manifest "
                     "has no val split).")
    say(f"done in {result.seconds:.1f}s")


def _one_of(option: str, value: Path | None, old: Path | None) -> Path | None:
    """The value of an option given by its name or by its hidden old name, not both."""
    if old is not None and value is not None and value != old:
        raise typer.BadParameter(f"give {option} once (or its old name).")
    return value if value is not None else old
