"""``babyemo models``: architectures, trained models and face detectors."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from babyemo.cli._common import cli_errors, say, stdout

app = typer.Typer(help="The model registry: architectures, trained models, model cards.",
                  no_args_is_help=True)


@app.command("list")
@cli_errors
def list_command(
    pattern: str = typer.Argument(None, help="Glob filter on architecture names, e.g. 'resnet*'."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """List registered architectures and trained models."""
    from babyemo.faces import list_detectors
    from babyemo.models.registry import list_archs
    from babyemo.models.store import default_model, list_trained

    archs = list_archs(pattern)
    trained = list_trained()
    default = default_model()
    detectors = list_detectors()
    if as_json:
        stdout.print_json(json.dumps({
            "face_detectors": [{"name": d.name, "description": d.description}
                               for d in detectors],
            "architectures": [{"name": a.name, "input": a.default_input.to_dict(),
                               "pretrained": a.pretrained, "description": a.description}
                              for a in archs],
            "trained": trained, "default": default}))
        return
    table = Table(title="Architectures")
    for col in ("name", "input", "pretrained", "description"):
        table.add_column(col)
    for a in archs:
        spec = a.default_input
        table.add_row(a.name, f"{spec.size}px {'RGB' if spec.channels == 3 else 'gray'}",
                      "yes" if a.pretrained else "no", escape(a.description))
    stdout.print(table)
    table = Table(title="Trained models")
    table.add_column("name", no_wrap=True)
    for col in ("arch", "classes", "val macro-F1", "created", "checkpoint"):
        table.add_column(col, overflow="fold")
    for name, rec in reversed(trained.items()):
        if rec.get("packaged"):
            from babyemo.checkpoint import load_checkpoint

            ckpt = load_checkpoint(rec["checkpoint"])
            rec = {**rec, "arch": ckpt.arch, "class_names": ckpt.class_names,
                   "val_macro_f1": (ckpt.metrics.get("val") or {}).get("macro_f1")}
        f1 = rec.get("val_macro_f1")
        label = name + (" (packaged)" if rec.get("packaged") else "")
        cells = [label + (" (default)" if name == default else ""), rec.get("arch", ""),
                 ",".join(rec.get("class_names", [])), "" if f1 is None else f"{f1:.3f}",
                 rec.get("created", ""), rec["checkpoint"]]
        table.add_row(*[escape(c) for c in cells])
    stdout.print(table if trained else "No trained models yet (babyemo train).")
    table = Table(title="Face detectors")
    table.add_column("name", no_wrap=True)
    table.add_column("description")
    for d in detectors:
        table.add_row(escape(d.name), escape(d.description))
    stdout.print(table)


@app.command("info")
@cli_errors
def info_command(
    name: str = typer.Argument(..., help="Architecture name, trained model name, or .pt file."),
) -> None:
    """Show one architecture, trained model or checkpoint in detail."""
    from babyemo.errors import RegistryError

    if name.endswith(".pt") or Path(name).is_file():
        _show_checkpoint(Path(name))
        return
    from babyemo.models.registry import get_arch
    from babyemo.models.store import get_trained, list_trained

    if name in list_trained():
        rec = get_trained(name)
        _show_checkpoint(Path(rec["checkpoint"]), title=name)
        return
    try:
        a = get_arch(name)
    except RegistryError as e:
        raise RegistryError(f"No architecture or trained model named '{name}'.", e.hint) from None
    from babyemo.models.registry import create_model

    n_params = sum(p.numel() for p in create_model(name, num_classes=3).parameters())
    stdout.print(f"[bold]{a.name}[/bold]: {a.description}")
    say(f"default input: {a.default_input.to_dict()}")
    say(f"ImageNet weights: {'yes (--pretrained)' if a.pretrained else 'no'}")
    say(f"parameters (3 classes): {n_params:,}")


def _show_checkpoint(path, title: str | None = None) -> None:
    from babyemo.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path)
    stdout.print(f"[bold]{title or path}[/bold]  ({path})")
    say(f"arch: {ckpt.arch} {ckpt.arch_kwargs or ''}")
    say(f"class_names: {ckpt.class_names}")
    say(f"input: {ckpt.input_spec.to_dict()}")
    say(f"trained on: {ckpt.train.get('dataset')} ({ckpt.train.get('manifest')}), "
        f"epoch {ckpt.train.get('epoch')}, precision {ckpt.train.get('precision')}")
    val = ckpt.metrics.get("val") or {}
    if val:
        say(f"val: accuracy {val['accuracy']:.3f}, balanced accuracy "
            f"{val['balanced_accuracy']:.3f}, macro-F1 {val['macro_f1']:.3f}")
    say(f"created: {ckpt.raw.get('created')}  babyemo {ckpt.raw.get('babyemo_version')}")
    for ev in ckpt.evaluations:
        where = "".join(f", {c}={v}" for c, v in (ev.get("where") or {}).items())
        say(f"evaluated on {ev['dataset']} {ev['split']}{where} (n={ev['n']}): accuracy "
            f"{ev['accuracy']:.3f}, macro-F1 {ev['macro_f1']:.3f}")


@app.command("card")
@cli_errors
def card_command(
    name: str = typer.Argument(None, help="Trained model name or .pt file (default: the "
                               "default model)."),
    out: Path = typer.Option(None, "--out", help="Markdown file to write (default: print "
                             "to stdout)."),
) -> None:
    """Write a model card (Markdown): intended and out-of-scope use, training data and its
    biases, metrics with CIs per class and per slice, calibration."""
    from babyemo.card import write_model_card

    is_file = name is not None and (name.endswith(".pt") or Path(name).is_file())
    text, written = write_model_card(Path(name) if is_file else None,
                                     model=None if is_file else name, out=out)
    if written is None:
        stdout.out(text, end="")
    else:
        say(f"model card: {written}")


@app.command("default")
@cli_errors
def default_command(
    name: str = typer.Argument(None, help="Trained model to use when predict/evaluate get no "
                               "--model or --checkpoint."),
    reset: bool = typer.Option(False, "--reset", help="Go back to the packaged model."),
) -> None:
    """Show or set the default model."""
    from babyemo.models.store import default_model, set_default

    if reset or name is not None:
        set_default(None if reset else name)
    stdout.print(default_model() or "none (no trained model; train one with babyemo train)")
