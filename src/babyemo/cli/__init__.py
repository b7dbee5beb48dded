"""The ``babyemo`` command-line program (Typer).

A thin layer: parse options, call the Python API, render results. Results go to stdout,
progress, logs and errors to stderr. Importing this module must not import torch: command
modules import the heavy API inside their functions.
"""

from __future__ import annotations

import logging
import os
import sys

import typer

from babyemo import __version__
from babyemo.cli import calibrate as calibrate_cmds
from babyemo.cli import compare as compare_cmds
from babyemo.cli import data as data_cmds
from babyemo.cli import evaluate as evaluate_cmds
from babyemo.cli import export as export_cmds
from babyemo.cli import models as models_cmds
from babyemo.cli import predict as predict_cmds
from babyemo.cli import serve as serve_cmds
from babyemo.cli import train as train_cmds
from babyemo.cli._common import run_cli

app = typer.Typer(
    name="babyemo",
    help="Recognise emotions in infants' facial expressions: data, train, evaluate, predict.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # plain help: no rich markup that eats "[onnx]", no "<bool>" after flags, paragraphs
    # re-wrapped to the terminal (and `--help` renders without loading rich's help code)
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(data_cmds.app, name="data")
app.add_typer(models_cmds.app, name="models")
# short_help: one line each in `babyemo --help` at 80 columns (click cuts longer ones)
app.command("train", short_help="Train a model: checkpoints, resume, early stopping, curves."
            )(train_cmds.train_command)
app.command("evaluate", short_help="Metrics, confusion matrix and calibration on a split."
            )(evaluate_cmds.evaluate_command)
app.command("predict", cls=predict_cmds.PredictGroup,  # + `predict merge`
            short_help="Label the emotion in photos: files, folders -> CSV/JSON."
            )(predict_cmds.predict_command)
app.command("calibrate", short_help="Fit temperature scaling on a held-out split."
            )(calibrate_cmds.calibrate_command)
app.command("export", short_help="Export a checkpoint to ONNX (needs babyemo[onnx])."
            )(export_cmds.export_command)
app.command("compare", short_help="Compare two models' predictions: paired bootstrap CI."
            )(compare_cmds.compare_command)
app.command("serve", short_help="Web page + HTTP API on this machine (babyemo[serve])."
            )(serve_cmds.serve_command)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"babyemo {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Show the version and exit."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or info logs."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks of errors."),
) -> None:
    """Recognise emotions in infants' facial expressions."""
    from babyemo import progress

    progress.set_quiet(quiet)
    if debug:
        os.environ["BABYEMO_DEBUG"] = "1"
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO,
                        format="%(message)s", stream=sys.stderr)


def main() -> None:
    """Console-script entry point."""
    run_cli(app)
