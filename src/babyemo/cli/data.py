"""``babyemo data``: download, prepare, split and inspect datasets.

Results go to stdout (paths, rich tables, JSON); progress bars, logs and errors to stderr.
The data API is imported inside the commands so ``babyemo --help`` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from babyemo.cli._common import cli_errors, say, stderr, stdout

app = typer.Typer(help="Datasets: download, prepare (manifest + split), split, inspect.",
                  no_args_is_help=True)

_SPLIT_HELP = "Train,val,test fractions summing to 1."


def _parse_split(value: str) -> tuple[float, float, float]:
    from babyemo.errors import ConfigError

    try:
        parts = tuple(float(v) for v in value.split(","))
    except ValueError:
        raise typer.BadParameter(f"expected three numbers like 0.7,0.15,0.15, got {value!r}"
                                 ) from None
    from babyemo.data.preparation.split import validate_ratios

    try:
        return validate_ratios(parts)
    except ConfigError as e:
        raise typer.BadParameter(e.message) from None


def _print_catalog() -> None:
    from babyemo.data.sources.catalog import list_datasets

    for entry in list_datasets():
        how = {"github-archive": "GitHub archive", "kaggle": "kagglehub",
               "gdrive": "gdown"}.get(entry.kind, entry.kind)
        if entry.extra:
            how += f" (needs babyemo[{entry.extra}])"
        stdout.print(f"[bold]{escape(entry.name)}[/bold]: {escape(entry.title)}")
        stdout.print(f"  classes: {escape(', '.join(entry.classes) or '(read from folders)')}")
        stdout.print(f"  size: {escape(entry.size_note)}; fetched with {escape(how)}")
        stdout.print(f"  terms: {escape(entry.terms)}")
        stdout.print(f"  demographics: {escape(entry.demographics)}")


@app.command("catalog", short_help="List the known datasets, their classes and terms.")
@cli_errors
def catalog_command() -> None:
    """List the known datasets with their classes and terms of use."""
    _print_catalog()


@app.command("download", short_help="Download a catalogue dataset or an archive URL.")
@cli_errors
def download_command(
    name: Annotated[str | None, typer.Argument(help="Catalogue name (see --list).")] = None,
    dest: Annotated[Path | None, typer.Option(
        "--dest", help="Parent folder (default: babyemo home).")] = None,
    source: Annotated[Path | None, typer.Option(
        "--source", help="Local copy (folder or the dataset's archive) to use.")] = None,
    url: Annotated[str | None, typer.Option(
        "--url", help="Download a zip/tar archive from this URL.")] = None,
    sha256: Annotated[str | None, typer.Option(
        "--sha256", help="Expected SHA-256 of the --url archive (checked on every use).")
    ] = None,
    refresh: Annotated[bool, typer.Option(
        "--refresh", help="Download again and reinstall, replacing the cached archive and "
                          "folder (e.g. when one is corrupt).")] = False,
    list_: Annotated[bool, typer.Option("--list", help="List the catalogue and exit.")] = False,
) -> None:
    """Download a catalogue dataset (or an archive URL) and print its local folder."""
    if list_:
        _print_catalog()
        return
    if url is not None:
        if name is not None or source is not None:
            raise typer.BadParameter("give either NAME (with --source) or --url, not both")
    else:
        if name is None:
            raise typer.BadParameter("give a dataset NAME, --url URL or --list")
        if sha256 is not None:
            raise typer.BadParameter("--sha256 goes with --url")
        if refresh and source is not None:
            raise typer.BadParameter("--refresh downloads again; it does not go with --source")
    from babyemo.download import check_scheme, normalize_sha256
    from babyemo.errors import ConfigError

    if sha256 is not None:  # before any network or disk work
        try:
            sha256 = normalize_sha256(sha256)
        except ConfigError:
            raise typer.BadParameter(f"expected 64 hexadecimal digits, got {sha256!r}",
                                     param_hint="--sha256") from None
    from babyemo.data.sources import fetch

    if url is not None:
        check_scheme(url)
        folder = fetch.fetch_url_dataset(url, sha256=sha256, dest=dest, refresh=refresh)
    else:
        folder = fetch.fetch_dataset(name, dest=dest, source=source, refresh=refresh)
    typer.echo(str(folder))


def _counts_table(counts: dict[str, dict[str, int]], class_names: list[str],
                  title: str = "Images per split and class") -> Table:
    table = Table(title=title)
    table.add_column("split")
    for c in class_names:
        table.add_column(escape(c), justify="right")
    table.add_column("total", justify="right", style="bold")
    totals = dict.fromkeys(class_names, 0)
    for split, row in counts.items():
        table.add_row(split, *(str(row.get(c, 0)) for c in class_names), str(sum(row.values())))
        for c in class_names:
            totals[c] += row.get(c, 0)
    if len(counts) > 1:
        table.add_row("all", *(str(totals[c]) for c in class_names), str(sum(totals.values())),
                      style="bold")
    return table


def _print_warnings(warnings: list[str]) -> None:
    """Warnings of a command that writes something (prepare): log lines, on stderr."""
    for w in warnings:
        stderr.print(f"[yellow]Warning:[/yellow] {escape(w)}")


def _print_problems(problems: list[str]) -> None:
    """The problems ``data inspect`` found: its result, on stdout."""
    if not problems:
        stdout.print("[green]No problems found.[/green]")
        return
    stdout.print(f"[bold]Problems found ({len(problems)}):[/bold]")
    for p in problems:
        stdout.print(f"  - {escape(p)}")


_SHOWN_DUPLICATES = 3
"""Duplicate groups listed per kind by ``data inspect`` when none is a problem."""


def _print_duplicate_groups(kind: str, stats: dict[str, Any]) -> None:
    """List a kind's groups: every problem group (up to the report's examples), else a few;
    then how many are not listed."""
    examples = stats["examples"]
    shown = examples[:max(stats["problems"], _SHOWN_DUPLICATES)]
    if not shown:
        return
    first = " (spanning splits or with conflicting labels first)" if stats["problems"] else ""
    stdout.print(f"{kind} groups{first}:")
    for group in shown:
        stdout.print("  [dim]" + escape(" = ".join(group)) + "[/dim]")
    more = stats["groups"] - len(shown)
    if more > 0:
        listed = " (up to 10 in --json)" if len(examples) > len(shown) else ""
        stdout.print(f"  [dim]... and {more} more {kind} group(s){listed}[/dim]")


_MAX_LISTED = 10


def _one_line(path: str) -> str:
    """A file name on one line (newlines shown as ``\\n``)."""
    return path.replace("\n", "\\n").replace("\r", "\\r")


def _print_skipped(skipped: dict[str, int], skipped_files: list[dict[str, str]],
                   where: str = "dataset.json") -> None:
    """The skip counts, then up to ten skipped files with their reasons."""
    if not skipped:
        stdout.print("Skipped: none")
        return
    total = sum(skipped.values())
    stdout.print(f"Skipped: {total} (" + ", ".join(f"{k} {v}" for k, v in sorted(skipped.items()))
                 + ")")
    listed = [f for f in skipped_files if f.get("category") != "hidden"]
    for f in listed[:_MAX_LISTED]:
        stdout.print(f"  [dim]{escape(_one_line(f['path']))}: "
                     f"{escape(f.get('reason', ''))}[/dim]")
    more = total - skipped.get("hidden", 0) - min(len(listed), _MAX_LISTED)
    if more > 0:
        stdout.print(f"  [dim]... and {more} more (see {escape(where)})[/dim]")


def _check_out_folder(out: Path | None) -> None:
    """``--out`` of prepare and split is a folder one can write (before importing the
    data API; the API then checks it against the data)."""
    from babyemo.data.loading.folders import check_outputs

    check_outputs(folders={"--out": out})


@app.command("prepare", short_help="Scan a dataset into a manifest with a leak-free split.")
@cli_errors
def prepare_command(
    source: Annotated[str | None, typer.Argument(
        help="Catalogue name, folder, .zip/.tar archive or http(s) URL "
             "(default: infant-emotions).")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", help="Output folder (default: babyemo home).")] = None,
    split: Annotated[str, typer.Option("--split", help=_SPLIT_HELP)] = "0.7,0.15,0.15",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the split.")] = 0,
    resplit: Annotated[bool, typer.Option(
        "--resplit", help="Ignore train/val/test folders; split everything anew.")] = False,
    metadata: Annotated[Path | None, typer.Option(
        "--metadata", help="CSV with a path column (+ age_months, sex, skin_tone, ethnicity, "
                           "source, subject_id...).")] = None,
    name: Annotated[str | None, typer.Option(
        "--name", help="Dataset name (default: from the source).")] = None,
    faces: Annotated[str, typer.Option(
        "--faces", help="Detect faces once and store their boxes: yunet, or none "
                        "(images are already face crops).")] = "none",
) -> None:
    """Scan a dataset, make a duplicate-aware split and write manifest.csv + dataset.json."""
    ratios = _parse_split(split)
    _check_out_folder(out)
    from babyemo.data.preparation.prepare import prepare

    result = prepare(source, out=out, split=ratios, seed=seed, resplit=resplit,
                     metadata=metadata, name=name, faces=faces)
    manifest = result.manifest
    stdout.print(f"Manifest: {escape(str(result.manifest_path))}")
    stdout.print(f"{result.n_images} images, {len(manifest.class_names)} classes "
                 f"({escape(', '.join(manifest.class_names))}), root {escape(str(manifest.root))}")
    stdout.print(_counts_table(manifest.counts(), manifest.class_names))
    face_info = manifest.info.get("faces")
    if face_info:
        stdout.print(f"Faces ({escape(face_info['detector'])}): {face_info['n_with_face']} of "
                     f"{face_info['n_images']} images have a face, {face_info['n_multi_face']} "
                     f"several; {face_info['ms_per_image']} ms per image")
    _print_skipped(result.skipped, result.skipped_files)
    _print_warnings(result.warnings)


@app.command("split", short_help="Re-split a prepared dataset (duplicate-aware).")
@cli_errors
def split_command(
    manifest: Annotated[Path, typer.Argument(help="manifest.csv or its folder.")],
    split: Annotated[str, typer.Option("--split", help=_SPLIT_HELP)] = "0.7,0.15,0.15",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the split.")] = 0,
    out: Annotated[Path | None, typer.Option(
        "--out", help="Output folder (default: in place).")] = None,
) -> None:
    """Re-split a prepared dataset (duplicate-aware; no image is decoded)."""
    ratios = _parse_split(split)
    _check_out_folder(out)
    from babyemo.data.preparation.prepare import split_manifest

    result = split_manifest(manifest, split=ratios, seed=seed, out=out)
    stdout.print(f"Manifest: {escape(str(result.path))}")
    stdout.print(_counts_table(result.counts(), result.class_names))


def _dup_row(table: Table, kind: str, stats: dict[str, Any]) -> None:
    table.add_row(kind, str(stats["groups"]), str(stats["images"]),
                  str(stats["spanning_splits"]), str(stats["conflicting_labels"]))


def _print_report(report: Any) -> None:
    d = report.to_dict()
    stdout.print(f"[bold]{escape(d['name'])}[/bold] ({d['kind']}: {escape(d['inspected'])})")
    stdout.print(f"{d['n_images']} images, {len(d['class_names'])} classes, root "
                 f"{escape(d['root'])}")
    counts = _counts_table(d["counts"], d["class_names"])
    stdout.print(counts)
    ratios = ", ".join(f"{k} {'n/a' if v is None else f'{v:.2f}'}"
                       for k, v in d["imbalance"].items())
    stdout.print(f"Imbalance (largest/smallest class): {ratios}")

    table = Table(title="Files")
    table.add_column("what")
    table.add_column("values", overflow="fold")
    w, h = d["sizes"]["width"], d["sizes"]["height"]
    table.add_row("size (min / median / max)",
                  f"{w['min']}x{h['min']} / {w['median']:g}x{h['median']:g} / "
                  f"{w['max']}x{h['max']}")
    table.add_row("formats", ", ".join(f"{k} {v}" for k, v in d["formats"].items()))
    if d["modes"] is not None:
        table.add_row("modes", ", ".join(f"{k} {v}" for k, v in d["modes"].items()))
    table.add_row("name ending ≠ format", str(d["extension_mismatches"]))
    table.add_row("skipped", ", ".join(f"{k} {v}" for k, v in d["skipped"].items()) or "none")
    if d["near_blank"] is not None:
        table.add_row("near-blank", str(len(d["near_blank"])))
    stdout.print(table)
    if d["skipped"]:
        _print_skipped(d["skipped"], d["skipped_files"],
                       "--json" if d["kind"] == "folder" else "dataset.json")
    for path in d["missing_files"][:_MAX_LISTED]:
        stdout.print(f"  [dim]{escape(_one_line(path))}: missing[/dim]")

    table = Table(title=f"Duplicates (near: dHash within {d['near_duplicate_distance']} bits)")
    for col in ("kind", "groups", "images", "span splits", "conflicting labels"):
        table.add_column(col, justify="right" if col != "kind" else "left")
    _dup_row(table, "byte-identical", d["exact_duplicates"])
    _dup_row(table, "near-duplicate", d["near_duplicates"])
    stdout.print(table)
    _print_duplicate_groups("byte-identical", d["exact_duplicates"])
    _print_duplicate_groups("near-duplicate", d["near_duplicates"])

    faces = d.get("faces")
    if faces:
        table = Table(title=f"Faces ({escape(str(faces['detector']))}): share of images with a "
                            "detected face")
        table.add_column("split")
        for c in d["class_names"]:
            table.add_column(c, justify="right")
        for split, rates in faces["rate"].items():
            table.add_row(split, *[f"{rates[c]:.0%}" if c in rates else "" for c in
                                   d["class_names"]])
        stdout.print(table)
        stdout.print(f"{faces['with_face']} of {faces['n_images']} with a face, "
                     f"{faces['multi_face']} with several, {faces['tiny_face']} tiny "
                     f"(< 32 px)")
    if d["catalogue"]:
        cat = d["catalogue"]
        stdout.print(f"[bold]Catalogue:[/bold] {escape(cat['title'])}")
        stdout.print(f"  Demographics: {escape(cat['demographics'])}")
        stdout.print(f"  Terms: {escape(cat['terms'])}")
        stdout.print(f"  Cite: {escape(cat['citation'])}")
    meta = d["metadata"]
    if meta:
        stdout.print(f"[bold]Metadata[/bold] ({escape(meta['file'])}): "
                     f"{meta['images_with_metadata']} images with a row")
        for column, per_class in meta["by_class"].items():
            table = Table(title=f"{column} per class / split")
            table.add_column("group")
            table.add_column("distribution", overflow="fold")
            groups = list(per_class.items()) + list(meta["by_split"][column].items())
            for group, dist in groups:
                table.add_row(escape(group), escape(", ".join(f"{k} {v}" for k, v in dist.items())))
            stdout.print(table)
        if meta["subjects"]:
            s = meta["subjects"]
            stdout.print(f"Subjects: {s['n']}, in more than one split: {s['in_several_splits']}")
    _print_problems(d["warnings"])


@app.command("inspect", short_help="Counts, formats, duplicates, leaks, demographics.")
@cli_errors
def inspect_command(
    path: Annotated[Path | None, typer.Argument(
        help="manifest.csv, a prepared folder or a dataset folder "
             "(default: the last dataset prepared in this babyemo home).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Report counts, balance, formats, duplicates, leaks and demographics of a dataset."""
    from babyemo.data.inspection.report import inspect_dataset
    from babyemo.data.preparation.lookup import manifest_for_training

    if path is None:
        choice = manifest_for_training(None)
        say(f"Inspecting {choice.describe()}", stderr)
        path = choice.path
    report = inspect_dataset(path)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
        return
    _print_report(report)


@app.command("metadata", short_help="Write a metadata CSV: stock photos, FER subsets, copies.")
@cli_errors
def metadata_command(
    source: Annotated[str, typer.Argument(
        help="manifest.csv or its folder, an image folder, an archive, a URL or a catalogue "
             "name (e.g. infant-emotions).")],
    out: Annotated[Path, typer.Option(
        "--out", help="Metadata CSV to write (path, source, stock_site, fer_subset, "
                      "train_duplicate).")],
) -> None:
    """Write a metadata CSV: stock-photo origin, FER-2013 subset, copies of train images.

    source is stock or other and stock_site names the site (from file names); fer_subset
    is FER-2013's Training/PublicTest/PrivateTest; train_duplicate (for a prepared
    manifest) is yes for val/test images that copy a train image. Use it with `evaluate
    --slice-by source --metadata CSV`, `evaluate --where fer_subset=PrivateTest`, or `data
    prepare --metadata CSV`.
    """
    from babyemo.data.loading.folders import check_outputs

    check_outputs({"--out": out})  # write_stock_metadata() also checks it against the data
    from babyemo.data.inspection.stock import write_stock_metadata

    summary = write_stock_metadata(source, out)
    stdout.print(f"Metadata: {escape(str(summary.out))} ({summary.n} images under "
                 f"{escape(str(summary.root))})")
    stdout.print(f"stock: {summary.n_stock} ({summary.stock_share:.0%}), other: "
                 f"{summary.n - summary.n_stock}")
    if summary.n_train_duplicates:
        stdout.print(f"train_duplicate: {summary.n_train_duplicates} val/test images copy a "
                     "train image (evaluate --where train_duplicate=no leaves them out)")
    if summary.by_site:
        table = Table(title="Stock-photo sites (from file names)")
        table.add_column("site")
        table.add_column("images", justify="right")
        for site, n in summary.by_site.items():
            table.add_row(escape(site), str(n))
        stdout.print(table)
    if any(summary.by_label):
        table = Table(title="Stock share per class")
        for col in ("class", "images", "stock", "share"):
            table.add_column(col, justify="right" if col != "class" else "left")
        for label, c in summary.by_label.items():
            table.add_row(escape(label or "(top folder)"), str(c["n"]), str(c["stock"]),
                          f"{c['stock'] / c['n']:.0%}")
        stdout.print(table)


@app.command("audit", short_help="Find images whose label is probably wrong (cleanlab).")
@cli_errors
def audit_command(
    manifest: Annotated[Path | None, typer.Argument(
        help="manifest.csv or its folder (default: the one the --folds-run was made on, "
             "else the last prepared).")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", help="Output folder: label_issues.csv, audit.json, a contact sheet per "
                      "class (and folds/, the fold models, when trained here).")] = None,
    folds_run: Annotated[Path | None, typer.Option(
        "--folds-run", help="Folder of a finished `babyemo train --folds K --out DIR` run "
                            "on this manifest: its out-of-fold probabilities are audited "
                            "(no training).")] = None,
    folds: Annotated[int, typer.Option(
        "--folds", metavar="K", min=2, help="Without --folds-run: K fold models are "
                                            "trained first, into OUT/folds.")] = 5,
    arch: Annotated[str | None, typer.Option(
        "--arch", help="Their architecture (default: the default recipe's).")] = None,
    epochs: Annotated[int | None, typer.Option(
        "--epochs", min=1, help="Their epochs (default: 10, a quick version of the default "
                                "recipe).")] = None,
    image_size: Annotated[int | None, typer.Option(
        "--image-size", help="Their input side in pixels (default: the arch's).")] = None,
    init: Annotated[str | None, typer.Option(
        "--init", help="Their initialisation (as `train --init`; use none on the dataset "
                       "the packaged init was trained on, FER-2013).")] = None,
    device: Annotated[str | None, typer.Option("--device", help="auto, cpu, cuda...")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed of the folds.")] = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue the fold models in OUT/folds.")] = False,
    top: Annotated[int, typer.Option(
        "--top", min=1, help="Suspects shown per class in the contact sheets.")] = 24,
    test_report: Annotated[bool, typer.Option(
        "--test-report", help="Also score the test images, for the report only "
                              "(test_label_issues.csv: the fold models' mean "
                              "probabilities); they are never to be edited.")] = False,
) -> None:
    """Rank the non-test images by how likely their label is wrong (confident learning).

    Out-of-fold probabilities of every non-test image (from --folds-run, or from K quick
    fold models trained here), then cleanlab's find_label_issues (Northcutt et al. 2021),
    ranked by self-confidence. Writes label_issues.csv (path, split, given_label,
    suggested_label, quality, rank, issue, conflict_group: duplicate groups with
    conflicting labels, as `data inspect` finds them), audit.json and a contact sheet per
    class of the top suspects. Nothing is changed: review the CSV (add a label column:
    a class, exclude, or empty) and apply it with `babyemo data relabel`. Test images are
    never audited. Needs `pip install 'babyemo[audit]'`.
    """
    if out is None:
        raise typer.BadParameter("give the output folder", param_hint="--out")
    given = (("arch", arch), ("epochs", epochs), ("image_size", image_size), ("init", init),
             ("device", device), ("seed", seed))
    recipe = {k: v for k, v in given if v is not None}
    if folds_run is not None and (recipe or resume):
        raise typer.BadParameter("the fold models of --folds-run are already trained: drop "
                                 f"--{next(iter(recipe), 'resume').replace('_', '-')}",
                                 param_hint="--folds-run")
    _check_out_folder(out)
    from babyemo.config import TrainConfig
    from babyemo.evaluation.audit import QUICK_EPOCHS, audit_labels

    config = None
    if folds_run is None:
        config = TrainConfig(**{"epochs": QUICK_EPOCHS, **recipe}, resume=resume)
    result = audit_labels(manifest, folds_run, out=out, top=top, folds=folds, config=config,
                          test_report=test_report)
    say(f"Audited {result.n} non-test images of {result.manifest} with the out-of-fold "
        f"probabilities of {result.oof_run}")
    table = Table(title="Label issues per given class (cleanlab, confident learning)")
    for col in ("class", "images", "flagged", "share"):
        table.add_column(col, justify="right" if col != "class" else "left")
    for c, n_flagged in result.issues_per_class.items():
        n = sum(1 for r in result.rows if r.given_label == c)
        table.add_row(escape(c), str(n), str(n_flagged), f"{n_flagged / n:.1%}" if n else "")
    table.add_row("all", str(result.n), str(result.n_issues),
                  f"{result.n_issues / result.n:.1%}" if result.n else "", style="bold")
    stdout.print(table)
    shown = result.suspects()[:10]
    if shown:
        stdout.print("Most suspect:")
        for r in shown:
            group = f" [{r.conflict_group}]" if r.conflict_group else ""
            say(f"  #{r.rank} {_one_line(r.path)}: {r.given_label} -> {r.suggested_label} "
                f"(quality {r.quality:.3f}){group}")
    say(f"Duplicate groups with conflicting labels: {len(result.conflict_groups)}")
    for kind, c in result.conflict_check().items():
        what = "byte-identical" if kind == "exact" else "near-duplicate"
        rnd = c["if_random"]
        line = (f"  {what}: {c['groups']}; a member flagged in "
                f"{c['with_audited_flagged']} of the {c['with_audited']} with audited images "
                f"(a random ranking: {rnd['with_audited_flagged']:.1f})")
        if c["best_percentile_median"] is not None:
            line += (f"; best-ranked member: median at {c['best_percentile_median']:.0%} of "
                     f"the ranking, {c['best_in_top_10']} in the top 10% (random: "
                     f"{rnd['best_in_top_10']:.1f}), {c['best_in_top_20']} in the top 20% "
                     f"(random: {rnd['best_in_top_20']:.1f})")
        if c["audited_conflicts"]:
            line += (f"; of the {c['audited_conflicts']} whose audited images disagree, "
                     f"{c['audited_conflicts_flagged']} flagged, "
                     f"{c['audited_conflicts_resolved']} with the flagged side suggested the "
                     "other side's label")
        say(line)
    if result.test_flagged is None:
        say(f"Test images: {result.n_test}, not audited (out-of-fold predictions cover none)")
    else:
        say(f"Test images: {result.n_test}, {result.test_flagged} flagged (reported only: the "
            f"test split is never edited; {result.files['test_issues']})")
    say(f"Issues: {result.files['issues']}")
    say(f"Contact sheets: {result.out}")


@app.command("relabel", short_help="Apply a reviewed label CSV to a new manifest.")
@cli_errors
def relabel_command(
    manifest: Annotated[Path, typer.Argument(help="manifest.csv or its folder (unchanged).")],
    review: Annotated[Path, typer.Option(
        "--from", help="Review CSV: path,label (a class name, exclude, or empty: no "
                       "decision); e.g. label_issues.csv with a label column.")],
    out: Annotated[Path, typer.Option("--out", help="Folder of the new manifest.")],
    allow_test: Annotated[bool, typer.Option(
        "--allow-test", help="Accept changes to test images (the test split should not be "
                             "edited to raise a score).")] = False,
) -> None:
    """Write a new manifest with the reviewed labels (excluded images dropped).

    The original manifest is never modified; the new dataset.json records the parent, the
    review file (path, SHA-256) and the counts of each change.
    """
    _check_out_folder(out)
    from babyemo.data.preparation.relabel import relabel_manifest

    result = relabel_manifest(manifest, review, out=out, allow_test=allow_test)
    say(f"Manifest: {result.manifest_path}")
    say(f"{result.n_relabelled} relabelled, {result.n_excluded} excluded, "
        f"{result.n_confirmed} confirmed, {result.n_undecided} undecided (from {result.review})")
    for change, n in result.changes.items():
        say(f"  {change}: {n}")
    stdout.print(_counts_table(result.manifest.counts(), result.manifest.class_names))
    _print_warnings(result.warnings)
