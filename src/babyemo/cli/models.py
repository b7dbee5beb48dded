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


@app.command("list", short_help="List architectures, trained models and face detectors.")
@cli_errors
def list_command(
    pattern: str = typer.Argument(None, help="Glob filter on architecture names, e.g. 'resnet*'."),
    wide: bool = typer.Option(False, "--wide", help="Every column of the trained models: "
                              "dataset, val and test macro-F1, creation time and checkpoint "
                              "file (lines are not cut to the terminal's width)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """List registered architectures, trained models and face detectors.

    A trained model's macro-F1 is its recorded test evaluation (babyemo evaluate --split
    test --record) when it has one, else its validation score.
    """
    from babyemo.card import checkpoint_facts
    from babyemo.errors import CheckpointError
    from babyemo.faces import list_detectors
    from babyemo.models.registry import list_archs
    from babyemo.models.store import default_model, list_trained

    archs = list_archs(pattern)
    trained = list_trained()
    default = default_model()
    detectors = list_detectors()
    rows = {}
    for name, rec in trained.items():
        try:
            facts = checkpoint_facts(rec["checkpoint"])
        except CheckpointError as e:  # a deleted run folder must not hide the other models
            facts = {"error": e.message}
        rows[name] = {**rec, **{k: v for k, v in facts.items() if v is not None},
                      "default": name == default}
    if as_json:
        stdout.print_json(json.dumps({
            "face_detectors": [{"name": d.name, "description": d.description}
                               for d in detectors],
            "architectures": [{"name": a.name, "input": a.default_input.to_dict(),
                               "pretrained": a.pretrained, "description": a.description}
                              for a in archs],
            "trained": rows, "default": default}))
        return
    table = Table(title="Architectures")
    table.add_column("name", no_wrap=True)
    table.add_column("input", no_wrap=True)
    table.add_column("pretrained", no_wrap=True)
    table.add_column("description")
    for a in archs:
        spec = a.default_input
        table.add_row(a.name, f"{spec.size}px {'RGB' if spec.channels == 3 else 'gray'}",
                      "yes" if a.pretrained else "no", escape(a.description))
    stdout.print(table, soft_wrap=False)
    if trained:
        table = _trained_table(rows, wide)
        if wide:  # full paths: let the terminal wrap the long lines, never fold a word
            from rich.console import Console
            from rich.measure import Measurement

            need = Measurement.get(stdout, stdout.options.update_width(10_000), table).maximum
            Console(file=stdout.file, width=max(stdout.width, need), highlight=False,
                    force_terminal=stdout.is_terminal, no_color=stdout.no_color).print(table)
        else:
            stdout.print(table, soft_wrap=False)  # the caption wraps at word boundaries
    else:
        stdout.print("No trained models yet (babyemo train).")
    table = Table(title="Face detectors")
    table.add_column("name", no_wrap=True)
    table.add_column("description")
    for d in detectors:
        table.add_row(escape(d.name), escape(d.description))
    stdout.print(table, soft_wrap=False)


def _f1(value: float | None, n: int | None = None) -> str:
    if value is None:
        return "—"
    return f"{value:.3f}" + (f" (n={n})" if n else "")


def _trained_table(rows: dict[str, dict], wide: bool) -> Table:
    """The "Trained models" table, newest first: name, arch, classes and one macro-F1 (fits
    80 characters), or with ``wide`` every column."""
    caption = ("macro-F1: the recorded test evaluation (test) if any, else the validation "
               "split at the best epoch (val; a model trained on train+val has none); —: "
               "none recorded (babyemo evaluate --model NAME --split test --record). All "
               "columns: --wide." if not wide else
               "test: the latest recorded evaluation on the model's own test split (babyemo "
               "evaluate --model NAME --split test --record); val: the validation split at "
               "the best epoch (a model trained on train+val has none); —: none recorded.")
    table = Table(title="Trained models (newest first)", caption=caption,
                  caption_justify="left")
    table.add_column("name", no_wrap=True)
    table.add_column("arch", no_wrap=True)
    table.add_column("classes")
    if wide:
        table.add_column("dataset", no_wrap=True)
        table.add_column("val macro-F1", no_wrap=True)
        table.add_column("test macro-F1", no_wrap=True)
        table.add_column("created", no_wrap=True)
        table.add_column("checkpoint", no_wrap=True)
    else:
        table.add_column("macro-F1", no_wrap=True)
    for name, rec in reversed(rows.items()):
        missing = not Path(rec["checkpoint"]).is_file()
        tags = ", ".join(t for t, on in (("packaged", rec.get("packaged")),
                                         ("default", rec.get("default")),
                                         ("file missing", missing),
                                         ("unreadable", rec.get("error") and not missing))
                         if on)
        label = escape(name) + (f"\n[dim]{tags}[/dim]" if tags else "")
        cells = [label, escape(str(rec.get("arch", ""))),
                 escape(", ".join(rec.get("class_names", [])))]
        if wide:
            cells += [escape(str(rec.get("dataset", ""))), _f1(rec.get("val_macro_f1")),
                      _f1(rec.get("test_macro_f1"), rec.get("test_n")),
                      escape(str(rec.get("created") or "")),
                      escape(str(rec["checkpoint"]))]
        else:
            test, val = rec.get("test_macro_f1"), rec.get("val_macro_f1")
            score = (f"{test:.3f} test" if test is not None
                     else f"{val:.3f} val" if val is not None else "—")
            cells.append(score)
        table.add_row(*cells)
    return table


@app.command("info")
@cli_errors
def info_command(
    name: str = typer.Argument(..., help="Architecture name, trained model name, or .pt file."),
) -> None:
    """Show one architecture, trained model or checkpoint in detail."""
    from babyemo.errors import RegistryError
    from babyemo.models import store
    from babyemo.models.registry import get_arch

    try:  # a file or a trained model's name: the store decides (checkpoint_or_model)
        path = store.checkpoint_or_model(name)
    except RegistryError:
        path = None
    if path is not None:
        _show_checkpoint(path, title=None if Path(name).expanduser().is_file() else name)
        return
    try:
        a = get_arch(name)
    except RegistryError as e:
        raise RegistryError(f"No architecture, trained model or checkpoint file named "
                            f"'{name}'.", e.hint) from None
    if not a.trainable:  # assembled from trained models: nothing to build without them
        stdout.print(f"[bold]{escape(a.name)}[/bold]: {escape(a.description)}")
        say("not trained: build one with `babyemo models ensemble NAME MEMBER...`")
        return
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
    from babyemo.models.ensemble import members_of

    members = members_of(ckpt)
    if members:
        say(f"arch: ensemble of {len(members)} members (the mean of their calibrated "
            "probabilities)")
        for m in members:
            say(f"  {m.get('name')}: {m.get('arch')} {m.get('input_size')} px, temperature "
                f"{float(m.get('temperature') or 1.0):.3f}, val macro-F1 "
                f"{_f1(m.get('val_macro_f1'))}  ({m.get('checkpoint')})")
    else:
        say(f"arch: {ckpt.arch} {ckpt.arch_kwargs or ''}")
    say(f"class_names: {ckpt.class_names}")
    say(f"input: {ckpt.input_spec.to_dict()}")
    if members:
        say(f"members trained on: {ckpt.train.get('dataset') or 'different datasets'}"
            + (f" ({ckpt.train['manifest']})" if ckpt.train.get("manifest") else ""))
    else:
        say(f"trained on: {ckpt.train.get('dataset')} ({ckpt.train.get('manifest')}), "
            f"epoch {ckpt.train.get('epoch')}, precision {ckpt.train.get('precision')}")
    cal = ckpt.calibration
    if members or cal:
        say(f"temperature: {ckpt.temperature:.4f}" + (
            f" (fitted on {cal.get('fitted_on')}, n={cal.get('n')})" if cal else
            " (uncalibrated)"))
    val = ckpt.metrics.get("val") or {}
    if val:
        say(f"val: accuracy {val['accuracy']:.3f}, balanced accuracy "
            f"{val['balanced_accuracy']:.3f}, macro-F1 {val['macro_f1']:.3f}")
    say(f"created: {ckpt.raw.get('created')}  babyemo {ckpt.raw.get('babyemo_version')}")
    for ev in ckpt.evaluations:
        where = "".join(f", {c}={v}" for c, v in (ev.get("where") or {}).items())
        say(f"evaluated on {ev['dataset']} {ev['split']}{where} (n={ev['n']}): accuracy "
            f"{ev['accuracy']:.3f}, macro-F1 {ev['macro_f1']:.3f}")


@app.command("card", short_help="Write a model card: use, data, biases, metrics with CIs.")
@cli_errors
def card_command(
    name: str = typer.Argument(None, help="Trained model name or .pt file (default: the "
                               "default model)."),
    out: str = typer.Option(None, "--out", help="Markdown file to write, or - for stdout "
                            "(the default)."),
) -> None:
    """Write a model card (Markdown): intended and out-of-scope use, training data and its
    biases, metrics with CIs per class and per slice, calibration."""
    from babyemo.data.loading.folders import check_outputs
    from babyemo.models.store import resolve_checkpoint

    is_file = name is not None and (name.endswith(".pt") or Path(name).is_file())
    checkpoint = resolve_checkpoint(Path(name) if is_file else None,
                                    None if is_file else name)
    out = None if out == "-" else out
    check_outputs({"--out": out}, inputs=[checkpoint])  # before importing torch
    from babyemo.card import write_model_card

    text, written = write_model_card(Path(name) if is_file else None,
                                     model=None if is_file else name, out=out)
    if written is None:
        stdout.out(text, end="")
    else:
        say(f"model card: {written}")


@app.command("ensemble", short_help="Combine trained models into one ensemble model.")
@cli_errors
def ensemble_command(
    name: str = typer.Argument(..., help="Name to register the ensemble under."),
    members: list[str] = typer.Argument(..., help="Two or more trained models (.pt files or "
                                        "registered names) with the same classes and face "
                                        "crops, e.g. the folds of a cross-validation run."),
    oof: Path = typer.Option(None, "--oof", help="Predictions CSV of held-out images with "
                             "'true' and 'prob_<class>' columns (a cross-validation run's "
                             "oof.csv, or evaluate's predictions.csv): the ensemble's "
                             "temperature is fitted on it."),
    out: Path = typer.Option(None, "--out", help="Checkpoint file to write (default: "
                             "<babyemo home>/models/NAME.pt)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Combine trained models into one ensemble model, registered under NAME.

    Its probabilities are the mean of the members' calibrated probabilities (each member
    sees the image at its own input size); with --oof its own temperature is fitted on
    out-of-fold predictions. It works wherever a model does: evaluate, predict, calibrate,
    export (one ONNX graph), models info and card.
    """
    from babyemo.data.loading.folders import check_outputs
    from babyemo.models import store

    # every check that needs no model comes before importing torch
    paths = [store.checkpoint_or_model(m) for m in members]
    out = out if out is not None else store.model_file(name)
    check_outputs({"--out": out}, inputs=[*paths, oof])
    store.check_name_free(name, out)
    from babyemo.models.ensemble import build_ensemble, members_of

    ckpt = build_ensemble([store.load(checkpoint=p) for p in paths], out, name=name, oof=oof)
    info = members_of(ckpt)
    cal = ckpt.calibration
    if as_json:
        stdout.print_json(json.dumps({
            "name": name, "checkpoint": str(ckpt.path), "class_names": ckpt.class_names,
            "input": ckpt.input_spec.to_dict(), "temperature": ckpt.temperature,
            "calibration": cal, "members": info}))
        return
    say(f"ensemble {name}: {ckpt.path}")
    say(f"members ({len(info)}):")
    for m in info:
        say(f"  {m['name']}: {m['arch']} {m['input_size']} px, temperature "
            f"{m['temperature']:.3f}, val macro-F1 {_f1(m.get('val_macro_f1'))}")
    if cal:
        say(f"temperature {ckpt.temperature:.4f} fitted on {cal['fitted_on']} (n={cal['n']}) of "
            f"{oof}; ECE {cal['ece_before']:.4f} -> {cal['ece_after']:.4f}")
    else:
        say(f"temperature 1 (uncalibrated: pass --oof FILE, or run `babyemo calibrate "
            f"--model {name}` on held-out images)")


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
