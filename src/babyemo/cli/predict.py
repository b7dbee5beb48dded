"""``babyemo predict`` and ``babyemo predict merge``.

``predict`` is a command that also holds a subcommand (:class:`PredictGroup`): when its
first argument is ``merge`` it runs :func:`merge_command`, else it predicts its arguments
as it always did (a folder named ``merge`` is given as ``./merge``).
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from typer.core import TyperGroup

from babyemo.cli._common import cli_errors, runtime_options, say, stderr, stdout
from babyemo.config import Backend, NoFaceFallback
from babyemo.distributed import DEFAULT_TIMEOUT_S
from babyemo.prediction_shards import Shard
from babyemo.runtime import PREDICT_BATCH_SIZE, Runtime

if TYPE_CHECKING:
    from babyemo.data.loading.folders import FoundFiles
    from babyemo.prediction import Predictor, PredictResult
    from babyemo.prediction_shards import DistributedPredictResult
    from babyemo.video.inputs import MediaInputs
    from babyemo.video.predict import MediaResult, VideoOptions, VideoRun


FALLBACK_METAVAR = "<whole_image|error>"
"""The values ``--no-face-fallback`` shows (``full``, the old name of ``whole_image``, is
accepted but not shown)."""


def parse_no_face_fallback(value: str | NoFaceFallback) -> NoFaceFallback:
    """``--no-face-fallback``'s value: ``whole_image``, ``error``, or the deprecated ``full``
    (= ``whole_image``).

    Raises:
        typer.BadParameter: Any other value (a usage error, exit 2).
    """
    if isinstance(value, NoFaceFallback):
        return value
    try:
        return NoFaceFallback(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not one of 'whole_image', 'error'.") from None


def parse_shard(value: str | Shard) -> Shard:
    """``--shard``'s value: ``I/N``, the 0-based index ``I`` of ``N`` parts.

    Raises:
        typer.BadParameter: Not ``I/N``, ``N`` < 1 or ``I`` outside ``0..N-1`` (a usage
            error, exit 2).
    """
    if isinstance(value, Shard):
        return value
    from babyemo.errors import ConfigError

    try:
        return Shard.parse(value)
    except ConfigError as e:
        raise typer.BadParameter(f"{e.message} ({e.hint})" if e.hint else e.message) from None


@cli_errors
@runtime_options(batch_size=PREDICT_BATCH_SIZE)
def predict_command(
    inputs: list[str] = typer.Argument(None, help="Image and video files, folders, stream "
                                       "URLs (rtsp://, http(s)://)."),
    checkpoint: Path = typer.Option(None, "--checkpoint", help="A .pt file."),
    model: str = typer.Option(None, "--model", help="A trained model name (default: the "
                              "registry's default model)."),
    csv_out: str = typer.Option(None, "--csv", help="CSV file to write, or - for stdout "
                                "(the default when neither --csv nor --json is given)."),
    json_out: str = typer.Option(None, "--json", help="JSON file to write, or - for stdout."),
    recursive: bool = typer.Option(True, "--recursive/--no-recursive",
                                   help="Search sub-folders."),
    all_files: bool = typer.Option(False, "--all-files", help="In folders, try every file, "
                                   "not only those named like images (.jpg, .png, .webp, "
                                   ".heic...); files named on the command line are always "
                                   "tried."),
    strict: bool = typer.Option(False, "--strict", help="Exit 1 if any file could not be "
                                "read (photos without a face do not count)."),
    faces: str = typer.Option("auto", "--faces", help="auto (as the model was trained), none "
                              "(whole images), or a face detector: yunet."),
    no_face_fallback: NoFaceFallback = typer.Option(
        NoFaceFallback.whole_image, "--no-face-fallback", parser=parse_no_face_fallback,
        metavar=FALLBACK_METAVAR,
        help="With face detection, a photo in which no face is found: whole_image: classify "
        "the whole photo (its row says face=whole_image); error: no answer, a row with "
        "error=no_face."),
    save_crops: Path = typer.Option(None, "--save-crops", help="Write each face crop as PNG "
                                    "into this folder (off by default: privacy)."),
    min_confidence: float = typer.Option(None, "--min-confidence", min=0.0, max=1.0,
                                         metavar="P",
                                         help="Label rows whose top probability is below P "
                                         "(0-1) 'uncertain'; the most probable class goes "
                                         "to a top_class column."),
    shard: Shard = typer.Option(None, "--shard", parser=parse_shard, metavar="I/N",
                                help="Predict only part I (0-based) of N: the list of "
                                "files found is cut into N contiguous parts whose sizes "
                                "differ by at most 1. Writes --csv/--json (a file, not "
                                "stdout) and beside it <file>.shard.json; run I = 0 ... N-1 "
                                "with the same inputs and options, then `babyemo predict "
                                "merge`. Not under torchrun, which shards by itself."),
    dist_timeout: float = typer.Option(DEFAULT_TIMEOUT_S, "--dist-timeout", min=1,
                                       metavar="SECONDS", help="Under torchrun: how long a "
                                       "process waits for the others before the run fails."),
    fps: str = typer.Option("5", "--fps", metavar="F|all", help="Videos: frames analysed "
                            "per second of video time, or all."),
    camera: int = typer.Option(None, "--camera", min=0, metavar="N", help="Also read camera "
                               "N (0: the first) until Ctrl-C or --duration."),
    duration: float = typer.Option(None, "--duration", min=0.001, metavar="SECONDS",
                                   help="Videos: stop after this much video (live sources: "
                                   "wall time)."),
    smooth: float = typer.Option(1.0, "--smooth", min=0, metavar="SECONDS",
                                 help="Videos: moving average of each face track's "
                                 "probabilities over this window (0: none)."),
    min_episode: float = typer.Option(1.0, "--min-episode", min=0, metavar="SECONDS",
                                      help="Videos: shortest episode (a run of one label)."),
    episodes_out: Path = typer.Option(None, "--episodes", metavar="FILE",
                                      help="Videos: the episodes CSV (default: episodes.csv "
                                      "beside --csv)."),
    plot: Path = typer.Option(None, "--plot", metavar="FILE.png", help="Videos: a timeline "
                              "of each face track's probabilities with its episodes."),
    runtime: Runtime = None,
) -> None:
    """Predict the emotion of every image in files/folders (CSV: path, label, confidence,
    prob_<class>..., face, error, error_detail), and over time in videos.

    Videos (mp4, mov, avi, mkv, webm... named or found in folders), stream URLs and
    --camera N are sampled at --fps frames per second of video time; each face is
    followed as a track. The CSV then has one row per face per sampled frame (path,
    frame, time_s, track_id, label, confidence, prob_<class>..., box..., face, error,
    error_detail, raw_label; labels smoothed over --smooth seconds), and the episodes
    (runs of one label lasting at least --min-episode seconds) go to --episodes.

    Folders are walked in a fixed order (entries sorted by name, a folder's files before
    its sub-folders), so a run can be split: --shard I/N on N machines or runs, then
    `babyemo predict merge OUT.csv PART.csv...` joins the parts into the file one run
    would have written. Under torchrun (e.g. torchrun --nproc-per-node 4 -m babyemo
    predict PHOTOS --csv OUT.csv) each process predicts its part on its own GPU and rank 0
    writes OUT.csv. A folder named merge is given as ./merge.
    """
    import sys
    import time

    from babyemo.distributed import context_from_env
    from babyemo.errors import ConfigError
    from babyemo.prediction_shards import shard_outputs

    csv_stdout = csv_out == "-" or (csv_out is None and json_out is None)
    json_stdout = json_out == "-"
    to_stdout = csv_stdout or json_stdout
    if csv_stdout and json_stdout:
        raise ConfigError("--csv and --json both write to stdout (-).",
                          "write one of them to a file")
    world = context_from_env().world_size
    if world > 1 and shard is not None:
        raise ConfigError(f"--shard {shard} cannot be used under torchrun ({world} "
                          "processes): each process predicts the part of its rank.",
                          "leave out --shard, or run the shards without torchrun")
    if shard is not None or world > 1:
        shard_outputs(csv_out, json_out, "--shard" if shard is not None
                      else "Prediction under torchrun")
    from babyemo.video.inputs import find_media

    media = find_media(inputs or [], camera=camera, recursive=recursive, all_files=all_files)
    found = media.found
    video_outputs = {}
    if media.has_video:
        if shard is not None or world > 1:
            raise ConfigError("Videos are predicted in one process (no --shard, no torchrun).",
                              "predict the photos and the videos in separate runs")
        if episodes_out is None and csv_out and not csv_stdout:
            episodes_out = Path(csv_out).with_name("episodes.csv")
        video_outputs = {"--episodes": episodes_out, "--plot": plot}
    _check_arguments(found, None if csv_stdout else csv_out, None if json_stdout else json_out,
                     save_crops, checkpoint, model, faces, runtime.onnx,
                     more_outputs=video_outputs,
                     more_inputs=[s for s in media.sources if isinstance(s, str)])
    options = _video_options(fps, duration, smooth, min_episode) if media.has_video else None
    start = time.perf_counter()

    from babyemo.prediction import Predictor, predict_to_files  # imports torch: seconds

    def new_predictor(rt: Runtime) -> Predictor:
        return Predictor(checkpoint, model=model, runtime=rt, faces=faces,
                         no_face_fallback=no_face_fallback.value, save_crops=save_crops,
                         min_confidence=min_confidence)

    if world > 1:
        from babyemo.prediction_shards import predict_distributed

        run = predict_distributed(found, new_predictor, runtime=runtime, csv_out=csv_out,
                                  json_out=json_out, timeout_s=dist_timeout)
        _report_distributed(run, runtime, strict)
        return
    predictor = new_predictor(runtime)
    load_seconds = time.perf_counter() - start
    if media.has_video:
        done = _predict_media(media, predictor, options,
                              csv_out=sys.stdout if csv_stdout else csv_out,
                              json_out=sys.stdout if json_stdout else json_out,
                              episodes_out=episodes_out, plot=plot, load_seconds=load_seconds,
                              report=stderr if to_stdout else stdout)
        _fail_if_strict(strict, done.photos.n_errors + sum(
            1 for v in done.videos if v.error is not None))
        return
    if shard is not None:
        from babyemo.prediction_shards import predict_shard, sidecar_path

        summary = predict_shard(found, predictor, shard, csv_out=csv_out, json_out=json_out)
    else:
        summary = predict_to_files(found, predictor,
                                   csv_out=sys.stdout if csv_stdout else csv_out,
                                   json_out=sys.stdout if json_stdout else json_out)
    report = stderr if to_stdout else stdout
    for line in summary_lines(summary, predictor, load_seconds):
        _say_wrapped(line, report)
    if runtime.backend is not Backend.torch:
        say(f"backend: {predictor.model.engine.describe()}", report)
    if csv_out and not csv_stdout:
        say(f"csv: {csv_out}", report)
    if json_out and not json_stdout:
        say(f"json: {json_out}", report)
    if shard is not None:
        first, stop = shard.bounds(len(found.entries))
        where = f"entries {first + 1:,}-{stop:,}" if stop > first else "no entry"
        sidecars = ", ".join(str(sidecar_path(p)) for p in (csv_out, json_out) if p)
        _say_wrapped(f"shard {shard}: {where} of {len(found.entries):,} (sidecar: "
                     f"{sidecars}); join the {shard.count} parts with `babyemo predict "
                     "merge`", report)
    _fail_if_strict(strict, summary.n_errors)


def _video_options(fps: str, duration: float | None, smooth: float,
                   min_episode: float) -> VideoOptions:
    """The :class:`~babyemo.video.predict.VideoOptions` of the command line.

    Raises:
        typer.BadParameter: ``--fps`` is neither a number > 0 nor ``all``, or
            ``--duration``, ``--smooth`` or ``--min-episode`` is not finite (``inf``,
            ``nan``); each error names its option.
    """
    import math

    from babyemo.errors import ConfigError
    from babyemo.video.predict import VideoOptions

    value = fps.strip().lower()
    try:
        rate = None if value == "all" else float(value)
        VideoOptions(fps=rate)
    except (ValueError, ConfigError):
        raise typer.BadParameter(f"{fps!r} is not a number > 0 or 'all'.",
                                 param_hint="--fps") from None
    for option, seconds in (("--duration", duration), ("--smooth", smooth),
                            ("--min-episode", min_episode)):
        if seconds is not None and not math.isfinite(seconds):
            raise typer.BadParameter(f"{seconds!r} is not a finite number of seconds.",
                                     param_hint=option)
    return VideoOptions(fps=rate, duration_s=duration, smooth_s=smooth,
                        min_episode_s=min_episode)


def _predict_media(media: MediaInputs, predictor: Predictor, options: VideoOptions, *,
                   csv_out: Any, json_out: Any, episodes_out: Path | None,
                   plot: Path | None, load_seconds: float, report: Console) -> MediaResult:
    """Photos and videos into one CSV/JSON, a progress bar in video time (the current
    label of each track on it), then the summary."""
    from babyemo.progress import enabled as progress_enabled
    from babyemo.progress import progress_bar, quiet
    from babyemo.video.predict import predict_media_to_files

    state: dict[str, Any] = {}

    def on_frame(run: VideoRun, time_s: float) -> None:
        bar = state.get("bar")
        if bar is None or state.get("run") is not run:
            if bar is not None:
                state["context"].__exit__(None, None, None)
            total = run.info.duration_s if run.info is not None else None
            state["context"] = progress_bar(Path(run.source).name, total, "s of video")
            state["bar"], state["run"], state["t"] = state["context"].__enter__(), run, 0.0
            state["said"] = -1.0
            bar = state["bar"]
        bar.advance(max(0.0, time_s - state["t"]))
        state["t"] = time_s
        rate = f"{run.frames / run.seconds:.0f} frames/s" if run.seconds > 0 else ""
        if run.info is None or not run.info.live:
            bar.update(description=f"{Path(run.source).name} {rate}")
            return
        faces = ", ".join(f"track {t} {label} {p:.2f}"
                          for t, (label, p) in sorted(run.current.items())) or "no face"
        bar.update(description=f"{run.source} {time_s:.0f} s: {faces}")
        if not progress_enabled() and not quiet() and time_s - state["said"] >= 1.0:
            state["said"] = time_s  # no bar (not a terminal): a line a second
            stderr.print(f"{run.source} {time_s:.0f} s: {faces}")

    try:
        done = predict_media_to_files(media.found, media.sources, predictor, options,
                                      csv_out=csv_out, json_out=json_out,
                                      episodes_out=episodes_out, plot_out=plot,
                                      on_frame=on_frame)
    finally:
        if "context" in state:
            state["context"].__exit__(None, None, None)
    if media.found.entries:
        for line in summary_lines(done.photos, predictor, load_seconds):
            _say_wrapped(line, report)
    for v in done.videos:
        rate = "every frame" if options.fps is None else f"{options.fps:g} frames/s"
        tracks = len({e.track_id for e in v.episodes})
        what = (f"video {v.source}: {_n(v.frames, 'frame')} analysed ({rate}), "
                f"{v.video_s:.1f} s of video in {v.seconds:.1f} s "
                f"({v.realtime_factor:.1f}x real time), {_n(v.faces, 'face row')}, "
                f"{_n(v.no_face_frames, 'frame')} without a face, "
                f"{_n(len(v.episodes), 'episode')} in {_n(tracks, 'track')}")
        if v.error:
            what += f"; error: {v.error}"
        if v.stopped:
            what += "; stopped by Ctrl-C"
        _say_wrapped(what, report)
    for label, out in (("csv", csv_out), ("json", json_out)):
        if out is not None and not hasattr(out, "write"):
            say(f"{label}: {out}", report)
    if done.episodes_out is not None:
        say(f"episodes: {done.episodes_out} ({_n(done.n_episodes, 'episode')})", report)
    for p in done.plots:
        say(f"timeline: {p}", report)
    return done


def _fail_if_strict(strict: bool, n_errors: int) -> None:
    """With ``--strict``, exit 1 when files could not be read."""
    if strict and n_errors:
        stderr.print(f"[bold red]Error:[/bold red] {_n(n_errors, 'file')} could not "
                     "be read (--strict).")
        raise typer.Exit(1)


def _report_distributed(run: DistributedPredictResult, runtime: Runtime, strict: bool) -> None:
    """Rank 0 prints the summary of a torchrun run (the whole run's counts) and the files
    it merged; the other processes print nothing."""
    if not run.is_main:
        return
    for line in summary_lines(run.result, run.predictor):
        _say_wrapped(line, stdout)
    if runtime.backend is not Backend.torch:
        say(f"backend: {run.predictor.model.engine.describe()}", stdout)
    _say_wrapped(f"processes: {run.world_size} (torchrun), one part of the list each; "
                 "rank 0 merged the parts", stdout)
    for merged in run.merged:
        say(f"{merged.format}: {merged.out}", stdout)
    _fail_if_strict(strict, run.result.n_errors)


@cli_errors
def merge_command(
    out: Path = typer.Argument(..., help="The merged file to write: CSV, or JSON when the "
                               "parts are JSON."),
    parts: list[Path] = typer.Argument(..., help="The outputs of "
                                       "`babyemo predict --shard I/N`, I = 0 ... N-1, in any "
                                       "order, each beside its <part>.shard.json."),
) -> None:
    """Join the parts of `babyemo predict --shard I/N` runs into the file one run would
    have written, row for row.

    Refused, before anything is written: a part without its .shard.json, parts of
    different runs (inputs, N, model or format), a shard missing or given twice, a file
    in two parts, a part lacking rows of some of its files.
    """
    from babyemo.prediction_shards import merge_shards

    result = merge_shards(out, parts)
    say(f"merged {_n(result.shards, 'shard')} ({_n(result.n_entries, 'file')}, "
        f"{_n(result.n_rows, 'row')}) into {result.out}", stdout)


_merge_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False,
                         rich_markup_mode=None)
_merge_app.command("merge", short_help="Join the CSVs of --shard I/N runs into one, checked."
                   )(merge_command)


class PredictGroup(TyperGroup):
    """``babyemo predict``: the predict command, which also holds the subcommand
    ``merge``.

    When the first argument names a subcommand, it runs with the rest of the arguments;
    otherwise the arguments are parsed and run as the predict command's own, as a plain
    command parses them (options and paths in any order; a folder named ``merge`` is
    given as ``./merge``). Its help shows the predict options, then the subcommands.
    """

    allow_extra_args = False
    allow_interspersed_args = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_command(typer.main.get_command(_merge_app), "merge")

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        if args and args[0] in self.commands:
            ctx.invoked_subcommand = args[0]
            ctx.args = list(args[1:])
            return ctx.args
        return super(TyperGroup, self).parse_args(ctx, args)  # as a plain command

    def invoke(self, ctx: typer.Context) -> Any:
        name = ctx.invoked_subcommand
        if name is None:
            return super(TyperGroup, self).invoke(ctx)  # the predict command
        command = self.commands[name]
        args, ctx.args = ctx.args, []
        with ctx:
            # named from the root's context: click would put the predict command's own
            # arguments (INPUTS...) into the subcommand's usage line
            sub = command.make_context(f"{ctx.info_name} {name}", args,
                                       parent=ctx.parent or ctx)
            with sub:
                return sub.command.invoke(sub)

    def collect_usage_pieces(self, ctx: typer.Context) -> list[str]:
        return super(TyperGroup, self).collect_usage_pieces(ctx)  # no COMMAND: optional


def _check_arguments(found: FoundFiles, csv_out: str | None, json_out: str | None,
                     save_crops: Path | None, checkpoint: Path | None, model: str | None,
                     faces: str, onnx: Path | None = None, *,
                     more_outputs: dict[str, Path | None] | None = None,
                     more_inputs: list[str] | None = None) -> None:
    """What can be checked without loading torch, the model or the face detector: the
    outputs can be written and replace none of the inputs (the files ``found``, the
    videos), the model and detector names are known.

    Raises:
        DataError: See :func:`~babyemo.data.loading.folders.collect_input_files`.
        ConfigError: See :func:`~babyemo.data.loading.folders.check_outputs`.
        RegistryError: Unknown model or face detector name, or no model at all.
        CheckpointError: The checkpoint file does not exist.
    """
    from babyemo.data.loading.folders import check_outputs
    from babyemo.errors import CheckpointError, unknown_name
    from babyemo.faces.registry import list_detectors
    from babyemo.models.store import resolve_checkpoint

    path = resolve_checkpoint(checkpoint, model)
    check_outputs({"--csv": csv_out, "--json": json_out, **(more_outputs or {})},
                  {"--save-crops": save_crops},
                  inputs=[*found.files, *(more_inputs or []), path, onnx],
                  scanned=found.folders)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint not found: {path}",
                              "pass a .pt file written by `babyemo train`")
    detectors = [d.name for d in list_detectors()]
    if faces not in ("auto", "none", *detectors):
        raise unknown_name("face detector", faces, ["auto", *detectors])


def _n(count: int, word: str, plural: str | None = None) -> str:
    """``"1 file"``, ``"2 files"``."""
    return f"{count:,} {word if count == 1 else (plural or word + 's')}"


def summary_lines(summary: PredictResult, predictor: Predictor,
                  load_seconds: float | None = None) -> list[str]:
    """The end-of-run summary of ``babyemo predict``, one line per topic.

    Times: the run's wall time (``summary.seconds``) after the wall time of loading the
    model (``load_seconds``, by default ``summary.load_seconds``; the CLI includes importing
    torch); face detection is thread time summed over the parallel readers, so it is given
    with its share of their time, never as a part of the wall time.
    """
    load = summary.load_seconds if load_seconds is None else load_seconds
    lines = [f"{_n(summary.n_files, 'file')}, {_n(summary.n_rows, 'row')} in "
             f"{summary.seconds:.1f} s ({summary.images_per_s:.1f} files/s), after "
             f"{load:.1f} s loading the model"]
    counts = ", ".join(f"{k} {v:,}" for k, v in summary.label_counts.items()) or "none"
    lines.append(f"labels: {counts}")
    mode = predictor.face_detection
    if mode is not None:
        with_face = summary.n_files - summary.n_errors - summary.n_no_face
        lines.append(f"faces ({mode.detector}): {_n(with_face, 'photo')} with a face, "
                     f"{summary.n_multi_face:,} of them with several")
        if summary.n_no_face:
            what = ("rows with error=no_face (no answer; --no-face-fallback error), not "
                    "counted as errors" if NoFaceFallback(mode.fallback) is NoFaceFallback.error
                    else "classified whole, rows with face=whole_image")
            lines.append(f"no face found in {_n(summary.n_no_face, 'photo')}: {what}")
        readers = summary.parallel_readers
        if readers > 1:
            kind = "readers" if predictor.model.readers > 1 else "worker processes"
            lines.append(f"face detection: {summary.detect_seconds:.1f} s summed over "
                         f"{readers} parallel {kind} ({summary.detect_share:.0%} of their "
                         "time)")
        else:
            lines.append(f"face detection: {summary.detect_seconds:.1f} s "
                         f"({summary.detect_share:.0%} of the time)")
    if summary.n_errors:
        codes = ", ".join(f"{code} {n:,}" for code, n in summary.error_counts.items()
                          if code != "no_face")
        lines.append(f"errors: {_n(summary.n_errors, 'file')} could not be read ({codes})")
    else:
        lines.append("errors: none (every file could be read)")
    skipped = []
    if summary.n_non_image_skipped:
        skipped.append(f"{_n(summary.n_non_image_skipped, 'non-image file')} "
                       "(--all-files tries them)")
    if summary.n_hidden_skipped:
        skipped.append(_n(summary.n_hidden_skipped, "hidden entry", "hidden entries"))
    if skipped:
        lines.append("skipped: " + ", ".join(skipped))
    return lines


def _say_wrapped(text: str, console: Console) -> None:
    """Print ``text`` wrapped at the console's width between words (never inside one: a
    path or a code stays whole), continuation lines indented by two spaces."""
    for line in textwrap.wrap(text, width=max(40, console.width), subsequent_indent="  ",
                              break_long_words=False, break_on_hyphens=False):
        say(line, console)
