"""Sharded prediction: one list of inputs split among processes or machines, joined again.

``babyemo predict PATHS --shard I/N`` predicts the ``I``-th of ``N`` contiguous parts of
the input list (:func:`predict_shard`) and writes, beside its CSV (and/or JSON), a sidecar
``<file>.shard.json`` (:class:`ShardInfo`) that says which part it is of which list;
``babyemo predict merge OUT PART...`` (:func:`merge_shards`) checks the parts against
their sidecars and joins them into the file an unsharded run would have written, row for
row. Under ``torchrun`` (:func:`predict_distributed`) each process predicts the shard of
its rank and rank 0 merges.

The list. The entries are those :func:`~babyemo.data.loading.folders.collect_input_files`
finds, every one of them (also those that give an error row: a broken link, a FIFO, a
folder that cannot be listed), in its order: the inputs as given, each folder walked with
its entries sorted by name (Python's code-point order of the names, so neither the
locale nor the order in which the file system lists them matters), a folder's files
before its sub-folders. The same arguments over the same files therefore give the same
list on every machine. A path is compared as it is written in the CSV ``path`` column
(:func:`entry_path`), so every shard must be given the same inputs spelled the same way
(e.g. the same relative paths from the same working folder); the sidecar's SHA-256 of the
whole list turns a mismatch into an error at merge time instead of a wrong file.

The split is that of ``numpy.array_split``: ``N`` contiguous chunks whose sizes differ by
at most one, the larger ones first (:func:`split_sizes`); a shard may be empty.

Row for row: the merged file has the unsharded run's rows, in its order, with the same
paths, labels, faces and errors. Its probabilities are the same numbers as long as a
model's output for an image does not depend on which other images share its batch; a
cut can change that, and some kernels (e.g. the CPU's for a batch of one image) round the
last bit of a float32 differently, as another ``--batch-size`` would. Measured with the
packaged model on the 300 baby photos (2 CPU cores, batch 32, 3 shards): byte-identical
CSVs. One file per batch (``--batch-size 1``) makes every batch the same in both runs.

This module imports no torch at import time (the CLI checks ``--shard`` before loading
the model); :func:`predict_shard` and :func:`predict_distributed` import it when called.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from babyemo.data.loading.folders import EntryError, FoundFiles, check_outputs, printable_name
from babyemo.distributed import DEFAULT_TIMEOUT_S, all_gather_object
from babyemo.errors import BabyEmoError, ConfigError, DataError, DistributedError
from babyemo.fs import atomic_open, atomic_write_text, sha256_file

if TYPE_CHECKING:
    from babyemo.prediction import Predictor, PredictResult
    from babyemo.runtime import Runtime

SIDECAR_SUFFIX = ".shard.json"
"""What :func:`sidecar_path` adds to an output's name."""

SIDECAR_VERSION = 1
"""Value of the sidecar's ``babyemo_shard`` key (its format version)."""

FORMATS = ("csv", "json")
"""Output formats a shard can be written in (a sidecar's ``format``)."""

_SHARD_SPEC = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


@dataclass(frozen=True)
class Shard:
    """One part of a split list: the ``index``-th (0-based) of ``count``.

    Args:
        index: 0 to ``count - 1``.
        count: Number of parts, at least 1.

    Raises:
        ConfigError: ``count`` < 1 or ``index`` outside ``[0, count)``.
    """

    index: int
    count: int

    def __post_init__(self) -> None:
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1:
            raise ConfigError(f"A split needs at least 1 shard, got {self.count!r}.",
                              "give I/N with N >= 1, e.g. 0/3")
        if (isinstance(self.index, bool) or not isinstance(self.index, int)
                or not 0 <= self.index < self.count):
            raise ConfigError(f"Shard {self.index!r}/{self.count} does not exist: the index "
                              f"is 0-based, 0 to {self.count - 1}.",
                              f"run 0/{self.count} ... {self.count - 1}/{self.count}")

    @classmethod
    def parse(cls, text: str) -> Shard:
        """The shard written ``"I/N"`` (e.g. ``"0/3"``; spaces around the numbers are fine).

        Raises:
            ConfigError: Not of the form ``I/N`` with integers, or a shard that does not
                exist (see :class:`Shard`).
        """
        match = _SHARD_SPEC.match(str(text))
        if match is None:
            raise ConfigError(f"{str(text)!r} is not a shard: write it I/N, the 0-based "
                              "index I of N parts.", "e.g. 0/3, 1/3 and 2/3 for three parts")
        return cls(int(match.group(1)), int(match.group(2)))

    def bounds(self, total: int) -> tuple[int, int]:
        """``(start, stop)`` of this shard in a list of ``total`` entries (see
        :func:`split_sizes`)."""
        sizes = split_sizes(total, self.count)
        start = sum(sizes[:self.index])
        return start, start + sizes[self.index]

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def split_sizes(total: int, count: int) -> list[int]:
    """Sizes of the ``count`` contiguous chunks of a list of ``total`` entries, as
    ``numpy.array_split`` cuts it: ``total // count`` each, the first ``total % count``
    one more (so sizes differ by at most one; with ``count > total`` some are 0).

    Raises:
        ConfigError: ``count`` < 1 or ``total`` < 0.
    """
    if count < 1 or total < 0:
        raise ConfigError(f"Cannot split {total} entries into {count} shards.",
                          "give at least 1 shard")
    each, extra = divmod(total, count)
    return [each + 1] * extra + [each] * (count - extra)


def entry_path(entry: Path | EntryError) -> str:
    """An entry of :attr:`FoundFiles.entries` as its rows write it in the ``path`` column
    (undecodable bytes shown as ``\\xNN``, see
    :func:`~babyemo.data.loading.folders.printable_name`)."""
    return printable_name(str(entry.path if isinstance(entry, EntryError) else entry))


def entry_paths(found: FoundFiles) -> list[str]:
    """:func:`entry_path` of every entry, in order."""
    return [entry_path(e) for e in found.entries]


def paths_sha256(paths: Sequence[str]) -> str:
    """SHA-256 (hex) of an ordered list of paths: each path's UTF-8 bytes followed by a
    NUL byte (which no path holds), so neither the order nor the cut between two paths can
    change without changing the hash."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.encode("utf-8", "surrogateescape") + b"\0")
    return digest.hexdigest()


def shard_entries(found: FoundFiles, shard: Shard) -> FoundFiles:
    """The entries of ``shard``: a :class:`FoundFiles` with its chunk of
    :attr:`FoundFiles.entries` (files and error entries, in order) and the whole walk's
    ``hidden``, ``non_images`` and ``folders`` (what was skipped, and where no output may
    be written)."""
    start, stop = shard.bounds(len(found.entries))
    part = FoundFiles(hidden=found.hidden, non_images=list(found.non_images),
                      folders=list(found.folders))
    for entry in found.entries[start:stop]:
        part.add(entry)
    return part


def sidecar_path(output: str | os.PathLike[str]) -> Path:
    """The sidecar of a shard's output: ``<output>.shard.json``."""
    return Path(f"{os.fspath(output)}{SIDECAR_SUFFIX}")


def part_path(output: str | os.PathLike[str], rank: int, world_size: int) -> Path:
    """The part written by process ``rank`` of ``world_size`` for ``output`` under
    torchrun: ``<output>.part-<rank>-of-<world_size><suffix>`` (e.g.
    ``out.csv.part-1-of-4.csv``; suffix ``.csv`` when ``output`` has none)."""
    suffix = Path(output).suffix or ".csv"
    return Path(f"{os.fspath(output)}.part-{rank}-of-{world_size}{suffix}")


@dataclass(frozen=True)
class ShardInfo:
    """The sidecar of one shard's output (``<output>.shard.json``, a JSON object with
    these keys and ``"babyemo_shard": 1``).

    Attributes:
        shard: The shard's 0-based index.
        shards: Number of shards of the list.
        total: Entries of the whole list.
        list_sha256: :func:`paths_sha256` of the whole list's paths, in order.
        paths: This shard's paths (:func:`entry_path`), in order.
        format: ``"csv"`` or ``"json"``: what the output beside it holds.
        rows: Rows the output holds (one per face with face detection, so at least one
            per path).
        checkpoint_sha256: SHA-256 of the checkpoint file that predicted it (``None`` when
            not known); parts of different models are not merged.
    """

    shard: int
    shards: int
    total: int
    list_sha256: str
    paths: tuple[str, ...]
    format: str = "csv"
    rows: int = 0
    checkpoint_sha256: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON object written (plain types)."""
        return {"babyemo_shard": SIDECAR_VERSION, "shard": self.shard, "shards": self.shards,
                "total": self.total, "list_sha256": self.list_sha256, "format": self.format,
                "rows": self.rows, "checkpoint_sha256": self.checkpoint_sha256,
                "paths": list(self.paths)}

    @classmethod
    def from_dict(cls, data: Any, source: str | os.PathLike[str] = "sidecar") -> ShardInfo:
        """Read a sidecar's object back.

        Raises:
            DataError: Not a sidecar of this version, or a key missing or of the wrong
                type, or values that do not fit (a shard outside ``[0, shards)``, more
                paths than the list).
        """

        def bad(reason: str) -> DataError:
            return DataError(f"{source} is not a shard sidecar of babyemo: {reason}.",
                             "predict that shard again with `babyemo predict ... --shard I/N`")

        if not isinstance(data, dict):
            raise bad("not a JSON object")
        if data.get("babyemo_shard") != SIDECAR_VERSION:
            raise bad(f"babyemo_shard is {data.get('babyemo_shard')!r}, not {SIDECAR_VERSION}")
        ints = {k: data.get(k) for k in ("shard", "shards", "total", "rows")}
        for key, value in ints.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise bad(f"'{key}' is {value!r}, not a count")
        paths, digest, fmt = data.get("paths"), data.get("list_sha256"), data.get("format")
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            raise bad("'paths' is not a list of paths")
        if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise bad("'list_sha256' is not a SHA-256")
        if fmt not in FORMATS:
            raise bad(f"'format' is {fmt!r}, not csv or json")
        model = data.get("checkpoint_sha256")
        if model is not None and not isinstance(model, str):
            raise bad("'checkpoint_sha256' is not a string")
        if not ints["shard"] < ints["shards"] or len(paths) > ints["total"]:
            raise bad(f"shard {ints['shard']}/{ints['shards']} with {len(paths)} of "
                      f"{ints['total']} paths does not fit")
        return cls(shard=ints["shard"], shards=ints["shards"], total=ints["total"],
                   list_sha256=digest, paths=tuple(paths), format=fmt, rows=ints["rows"],
                   checkpoint_sha256=model)


def write_sidecar(output: str | os.PathLike[str], info: ShardInfo) -> Path:
    """Write ``info`` beside ``output`` as ``<output>.shard.json``, atomically.

    Returns:
        The sidecar's path.
    """
    path = sidecar_path(output)
    atomic_write_text(path, json.dumps(info.to_dict(), ensure_ascii=False, indent=1) + "\n")
    return path


def read_sidecar(output: str | os.PathLike[str]) -> ShardInfo:
    """The :class:`ShardInfo` beside a shard's output.

    Raises:
        DataError: No sidecar (the file was not written by ``babyemo predict --shard``,
            or the run did not finish), or one that cannot be read.
    """
    path = sidecar_path(output)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{printable_name(str(output))} has no sidecar {path.name}: it is "
                        "not the output of a finished `babyemo predict --shard I/N` run.",
                        "give the parts written with --shard, each beside its "
                        ".shard.json") from None
    except OSError as e:
        raise DataError(f"Cannot read {path}: {e.strerror or e}.",
                        "check its permissions") from None
    try:
        data = json.loads(text)
    except ValueError as e:
        raise DataError(f"{path} is not valid JSON ({e}).",
                        "predict that shard again with `babyemo predict ... --shard I/N`"
                        ) from None
    return ShardInfo.from_dict(data, path)


def shard_outputs(csv_out: Any, json_out: Any, what: str = "A shard") -> dict[str, Path]:
    """``{format: path}`` of the file outputs of a shard (``"-"`` or a stream: stdout).

    Args:
        csv_out: CSV output, or ``None``.
        json_out: JSON output, or ``None``.
        what: What is checked, for the message (e.g. ``"--shard"``).

    Raises:
        ConfigError: No file output, or a stream (stdout): a shard's sidecar needs a file
            to sit beside.
    """
    outputs = {fmt: out for fmt, out in (("csv", csv_out), ("json", json_out))
               if out is not None}
    if not outputs or any(hasattr(out, "write") or os.fspath(out) == "-"
                          for out in outputs.values()):
        raise ConfigError(f"{what} writes its rows to a file, not to stdout: its sidecar "
                          "(which part of which list) goes beside it.",
                          "give --csv FILE and/or --json FILE")
    return {fmt: Path(out) for fmt, out in outputs.items()}


def predict_shard(found: FoundFiles, predictor: Predictor, shard: Shard, *,
                  csv_out: str | os.PathLike[str] | None = None,
                  json_out: str | os.PathLike[str] | None = None) -> PredictResult:
    """Predict one shard of the entries and write its output(s) and sidecar(s).

    The shard's entries (:func:`shard_entries`) go through
    :func:`~babyemo.prediction.predict_to_files` as usual; then ``<output>.shard.json``
    (:class:`ShardInfo`) is written beside each output, atomically. An older sidecar
    beside an output is removed before predicting, so an interrupted run leaves no
    sidecar that describes another file. An empty shard (more shards than entries)
    writes an output with the header only. Face crops (the predictor's ``save_crops``)
    are numbered by the file's place in the whole list, so the shards' crops are named as
    one run names them.

    Args:
        found: The whole list, as :func:`~babyemo.data.loading.folders.collect_input_files`
            found it (every shard must be given the same).
        predictor: The model.
        shard: Which part to predict.
        csv_out: CSV file to write.
        json_out: JSON file to write.

    Returns:
        The :class:`~babyemo.prediction.PredictResult` of the shard (its ``n_files``
        counts the shard's entries; the hidden and non-image counts are the whole walk's).

    Raises:
        ConfigError: No output file, an output to stdout, or an output (or its sidecar)
            that cannot be written or replaces an input (see
            :func:`~babyemo.data.loading.folders.check_outputs`); nothing is written then.
        Every error of :func:`~babyemo.prediction.predict_to_files`.
    """
    from babyemo.prediction import predict_to_files

    outputs = shard_outputs(csv_out, json_out, f"Shard {shard}")
    checkpoint = getattr(getattr(predictor, "checkpoint", None), "path", None)
    check_outputs({**{f"{fmt}_out": out for fmt, out in outputs.items()},
                   **{f"the sidecar of {fmt}_out": sidecar_path(out)
                      for fmt, out in outputs.items()}},
                  inputs=[*found.files, checkpoint], scanned=found.folders)
    paths = entry_paths(found)
    start, stop = shard.bounds(len(paths))
    for out in outputs.values():
        sidecar_path(out).unlink(missing_ok=True)
    files_before = sum(not isinstance(e, EntryError) for e in found.entries[:start])
    result = predict_to_files(shard_entries(found, shard), predictor,
                              csv_out=outputs.get("csv"), json_out=outputs.get("json"),
                              first_index=files_before)
    model = sha256_file(checkpoint) if checkpoint is not None and os.path.isfile(checkpoint) \
        else None
    digest = paths_sha256(paths)
    for fmt, out in outputs.items():
        write_sidecar(out, ShardInfo(shard=shard.index, shards=shard.count, total=len(paths),
                                     list_sha256=digest, paths=tuple(paths[start:stop]),
                                     format=fmt, rows=result.n_rows,
                                     checkpoint_sha256=model))
    return result


@dataclass
class MergeResult:
    """What :func:`merge_shards` wrote.

    Attributes:
        out: The merged file.
        format: ``"csv"`` or ``"json"``.
        shards: Number of shards (= parts merged).
        n_entries: Entries of the whole list (files and error entries).
        n_rows: Rows written.
        parts: The parts, in shard order.
    """

    out: Path
    format: str
    shards: int
    n_entries: int
    n_rows: int
    parts: list[Path] = field(default_factory=list)


def _read_rows(part: Path, fmt: str) -> tuple[list[str] | None, Iterator[tuple[str, Any]]]:
    """``(CSV header or None for JSON, iterator of (path, row))`` of a part: a CSV row as
    its list of cells, a JSON row as its object.

    Raises:
        DataError: The part cannot be read, or is not a prediction CSV/JSON.
    """
    shown = printable_name(str(part))
    try:
        if fmt == "json":
            with open(part, encoding="utf-8") as f:
                rows = json.load(f)
            if not isinstance(rows, list) or not all(
                    isinstance(r, dict) and isinstance(r.get("path"), str) for r in rows):
                raise DataError(f"{shown} is not a JSON list of prediction rows.",
                                "give the JSON parts written by `babyemo predict --shard`")
            return None, iter([(r["path"], r) for r in rows])
        f = open(part, encoding="utf-8", newline="")  # noqa: SIM115 (closed by the generator)
    except OSError as e:
        raise DataError(f"Cannot read {shown}: {e.strerror or e}.",
                        "check that the part exists and can be read") from None
    except ValueError as e:
        raise DataError(f"{shown} is not valid JSON ({e}).",
                        "predict that shard again") from None
    reader = csv.reader(f)
    try:
        header = next(reader, None)
    except (csv.Error, UnicodeDecodeError) as e:
        f.close()
        raise DataError(f"{shown} is not a prediction CSV ({e}).",
                        "predict that shard again") from None
    if not header or header[0] != "path":
        f.close()
        raise DataError(f"{shown} is not a prediction CSV: its first column is not 'path'.",
                        "give the CSV parts written by `babyemo predict --shard`")

    def rows() -> Iterator[tuple[str, Any]]:
        with f:
            try:
                for row in reader:
                    yield (row[0] if row else ""), row
            except (csv.Error, UnicodeDecodeError) as e:
                raise DataError(f"{shown} is not a readable CSV ({e}).",
                                "predict that shard again") from None

    return header, rows()


def _runs(paths: Sequence[str]) -> list[str]:
    """``paths`` with consecutive repeats collapsed (a file's rows, one per face)."""
    return [p for i, p in enumerate(paths) if i == 0 or p != paths[i - 1]]


def _check_parts(parts: Sequence[Path]) -> tuple[list[Path], list[ShardInfo]]:
    """The parts and their sidecars, in shard order, once every sidecar agrees.

    Raises:
        DataError: See :func:`merge_shards`.
    """
    for part in parts:
        if not part.is_file():
            raise DataError(f"No such part: {printable_name(str(part))}"
                            + (" (a folder)." if part.is_dir() else "."),
                            "give the files written with --shard I/N")
    infos = [read_sidecar(p) for p in parts]
    first, ref = parts[0], infos[0]
    for part, info in zip(parts[1:], infos[1:], strict=True):
        for key, what in (("format", "format"), ("shards", "number of shards"),
                          ("total", "number of entries"), ("list_sha256", "list of entries"),
                          ("checkpoint_sha256", "model (checkpoint SHA-256)")):
            if getattr(info, key) != getattr(ref, key):
                raise DataError(
                    f"{printable_name(str(part))} and {printable_name(str(first))} are "
                    f"shards of different runs: their {what} differ "
                    f"({getattr(info, key)} vs {getattr(ref, key)}).",
                    "merge the parts of one split: the same inputs, model and N, run "
                    "with --shard 0/N ... N-1/N")
    by_index: dict[int, Path] = {}
    for part, info in zip(parts, infos, strict=True):
        if info.shard in by_index:
            raise DataError(f"Shard {info.shard}/{ref.shards} is given twice: "
                            f"{printable_name(str(by_index[info.shard]))} and "
                            f"{printable_name(str(part))}.", "give each shard once")
        by_index[info.shard] = part
    missing = [i for i in range(ref.shards) if i not in by_index]
    if missing:
        shown = ", ".join(f"{i}/{ref.shards}" for i in missing[:10])
        raise DataError(f"{len(missing)} of {ref.shards} shards missing: {shown}"
                        + (" ..." if len(missing) > 10 else "") + ".",
                        "predict them with `babyemo predict ... --shard I/N` and give every "
                        "part")
    order = sorted(range(len(parts)), key=lambda k: infos[k].shard)
    parts, infos = [parts[k] for k in order], [infos[k] for k in order]
    sizes = split_sizes(ref.total, ref.shards)
    for part, info in zip(parts, infos, strict=True):
        if len(info.paths) != sizes[info.shard]:
            raise DataError(f"The sidecar of {printable_name(str(part))} lists "
                            f"{len(info.paths)} entries; shard {info.shard}/{info.shards} of "
                            f"{info.total} holds {sizes[info.shard]}.",
                            "predict that shard again")
    if paths_sha256([p for info in infos for p in info.paths]) != ref.list_sha256:
        raise DataError("The parts' sidecars do not add up to the list of entries they "
                        "were cut from (a sidecar edited or from another run?).",
                        "predict the shards again")
    return parts, infos


def _check_rows(parts: Sequence[Path], infos: Sequence[ShardInfo]) -> list[str] | None:
    """Each part's rows cover exactly its shard's paths, in order, and its header is the
    others'. Returns the CSV header (``None`` for JSON).

    Raises:
        DataError: See :func:`merge_shards`.
    """
    owner: dict[str, int] = {}
    for info in infos:
        for path in info.paths:
            owner.setdefault(path, info.shard)
    header0: list[str] | None = None
    for part, info in zip(parts, infos, strict=True):
        shown = printable_name(str(part))
        header, rows = _read_rows(part, info.format)
        if info.format == "csv":
            if header0 is None:
                header0 = header
            elif header != header0:
                raise DataError(f"{shown} has other columns than {printable_name(str(parts[0]))}"
                                " (another model, or other options such as --faces or "
                                "--min-confidence).",
                                "predict every shard with the same model and options")
        own = set(info.paths)
        seen: list[str] = []
        found: set[str] = set()
        for path, _ in rows:
            if path not in own:
                other = owner.get(path)
                where = (f"it belongs to shard {other}/{info.shards} "
                         f"({printable_name(str(parts[other]))}): a file in two parts"
                         if other is not None else "it is in no shard's list")
                raise DataError(f"{shown} (shard {info.shard}/{info.shards}) has a row of "
                                f"{path}, but {where}.",
                                "predict that shard again; never edit or join parts by hand")
            seen.append(path)
            found.add(path)
        lacking = [p for p in info.paths if p not in found]
        if lacking:
            raise DataError(f"{shown} (shard {info.shard}/{info.shards}) has no row of "
                            f"{len(lacking)} of its {len(info.paths)} files, e.g. "
                            f"{lacking[0]}.", "predict that shard again (was it cut short?)")
        if _runs(seen) != _runs(list(info.paths)):
            raise DataError(f"The rows of {shown} are not in the order of its shard's list.",
                            "predict that shard again")
        if len(seen) != info.rows:
            raise DataError(f"{shown} holds {len(seen)} rows, its sidecar says {info.rows}: "
                            "the file was changed or the sidecar belongs to another run.",
                            "predict that shard again")
    return header0


def merge_shards(out: str | os.PathLike[str],
                 parts: Sequence[str | os.PathLike[str]]) -> MergeResult:
    """Join the outputs of ``predict --shard 0/N`` ... ``N-1/N`` into the file an unsharded
    run would have written: the rows of each part in shard order, row for row (a file
    with several faces keeps its several rows).

    Everything is checked before ``out`` is written: every part has its sidecar
    (:func:`read_sidecar`); the sidecars agree on the format, ``N``, the number of
    entries, the list's hash and the model; each shard is given exactly once and all
    ``N`` are there; the sidecars' paths are the list they were cut from; each part's
    rows are exactly its shard's paths, in order, with the row count its sidecar
    recorded; CSV parts have the same columns. ``out`` is then written atomically (CSV or
    JSON as the parts are), and an older sidecar beside ``out`` is removed (a merged file
    is no shard).

    Args:
        out: The merged file (not one of the parts).
        parts: The parts, in any order.

    Returns:
        The :class:`MergeResult`.

    Raises:
        DataError: A part that is not a file, a part without a sidecar (or with an
            unreadable one), parts of different runs (format, ``N``, entry count, list
            hash or model), a shard missing or given twice, a part with a row of another
            shard's file (a file in two parts) or of no shard's, a part lacking rows of
            some of its files, rows out of order, a row count other than its sidecar's,
            or other CSV columns.
        ConfigError: ``out`` is one of the parts or sidecars, or cannot be written (see
            :func:`~babyemo.data.loading.folders.check_outputs`).
    """
    given = [Path(p) for p in parts]
    if not given:
        raise DataError("No parts to merge.", "give the parts written with --shard I/N")
    check_outputs({"OUT": out}, inputs=[*given, *map(sidecar_path, given)])
    ordered, infos = _check_parts(given)
    header = _check_rows(ordered, infos)
    fmt = infos[0].format
    n_rows = 0
    with atomic_open(out, "w", newline="" if fmt == "csv" else None) as f:
        n_rows = _write_merged(f, fmt, header, ordered)
    sidecar_path(out).unlink(missing_ok=True)
    return MergeResult(out=Path(out), format=fmt, shards=infos[0].shards,
                       n_entries=infos[0].total, n_rows=n_rows, parts=ordered)


def _write_merged(f: IO[str], fmt: str, header: list[str] | None,
                  parts: Sequence[Path]) -> int:
    """Write the parts' rows to ``f`` as :class:`~babyemo.rows.PredictionWriter` writes
    them (the same CSV dialect; the same JSON layout). Returns the number of rows."""
    n = 0
    writer = csv.writer(f) if fmt == "csv" else None
    if writer is not None:
        writer.writerow(header or [])
    else:
        f.write("[")
    for part in parts:
        for _, row in _read_rows(part, fmt)[1]:
            if writer is not None:
                writer.writerow(row)
            else:
                f.write(("," if n else "") + "\n  " + json.dumps(row, ensure_ascii=False))
            n += 1
    if writer is None:
        f.write("\n]\n")
    return n


def combine_results(results: Sequence[PredictResult]) -> PredictResult:
    """The :class:`~babyemo.prediction.PredictResult` of a run made of shards: counts
    summed; wall times (``seconds``, ``load_seconds``) the longest shard's, as the shards
    ran side by side; face detection time and parallel readers summed; the hidden and
    non-image counts (the whole walk's, the same in every shard) the first shard's.

    Raises:
        ConfigError: No results.
    """
    from babyemo.prediction import PredictResult

    if not results:
        raise ConfigError("No shard results to combine.")
    labels: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    for r in results:
        labels.update(r.label_counts)
        errors.update(r.error_counts)
    return PredictResult(
        n_files=sum(r.n_files for r in results), n_rows=sum(r.n_rows for r in results),
        n_errors=sum(r.n_errors for r in results),
        n_no_face=sum(r.n_no_face for r in results),
        n_multi_face=sum(r.n_multi_face for r in results),
        n_hidden_skipped=results[0].n_hidden_skipped,
        n_non_image_skipped=results[0].n_non_image_skipped,
        error_counts=dict(sorted(errors.items())), label_counts=dict(sorted(labels.items())),
        seconds=max(r.seconds for r in results),
        load_seconds=max(r.load_seconds for r in results),
        detect_seconds=sum(r.detect_seconds for r in results),
        parallel_readers=sum(r.parallel_readers for r in results))


@dataclass
class DistributedPredictResult:
    """What :func:`predict_distributed` returns on each process.

    Attributes:
        rank: This process's rank.
        world_size: Number of processes.
        result: The whole run's counts (:func:`combine_results` of every shard's), on
            every rank.
        shard_result: This process's own shard's counts.
        predictor: This process's :class:`~babyemo.prediction.Predictor`.
        merged: On rank 0, the :class:`MergeResult` of each output (CSV first); empty on
            the others.
    """

    rank: int
    world_size: int
    result: PredictResult
    shard_result: PredictResult
    predictor: Predictor
    merged: list[MergeResult] = field(default_factory=list)

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that merged and reports."""
        return self.rank == 0


def predict_distributed(found: FoundFiles, new_predictor: Callable[[Runtime], Predictor], *,
                        runtime: Runtime, csv_out: str | os.PathLike[str] | None = None,
                        json_out: str | os.PathLike[str] | None = None,
                        timeout_s: float = DEFAULT_TIMEOUT_S) -> DistributedPredictResult:
    """Predict under ``torchrun``: process ``R`` of ``W`` predicts shard ``R/W`` on its
    device, rank 0 merges the parts into ``csv_out`` / ``json_out``.

    Each process joins the process group (:func:`babyemo.distributed.start`: Gloo on the
    CPU, NCCL on GPUs, its device ``cuda:LOCAL_RANK`` on GPUs), builds its predictor with
    ``runtime`` on that device, predicts its shard into
    ``<out>.part-R-of-W<suffix>`` (+ sidecar, :func:`predict_shard`), then every process
    shares its outcome with the others (an all-gather that is also the barrier): if any
    failed, every process raises and rank 0 removes the parts; else rank 0 merges them
    with :func:`merge_shards` and removes them. The process group is left at the end
    (:func:`babyemo.distributed.stop`). The output's folder must be one every process can
    write and rank 0 can read (on one machine, always).

    Args:
        found: The whole list (each process finds the same).
        new_predictor: Builds this process's predictor from the runtime to use (``runtime``
            with the process's device).
        runtime: How the model runs; its ``device`` is ``auto``, ``cpu`` or ``cuda``.
        csv_out: CSV file rank 0 writes.
        json_out: JSON file rank 0 writes.
        timeout_s: Seconds a process waits for the others.

    Returns:
        The :class:`DistributedPredictResult` of this process.

    Raises:
        ConfigError: No output file, or an output to stdout.
        DistributedError: A bad launch, a process that is gone or late, or another
            process that failed (its message).
        Whatever this process's own prediction raised, and on rank 0 what
        :func:`merge_shards` raises.
    """
    from babyemo import distributed

    outputs = shard_outputs(csv_out, json_out, "Prediction under torchrun")
    ctx, device = distributed.start(runtime.device, timeout_s=timeout_s)
    try:
        rank, world = ctx.rank, ctx.world_size
        parts = {fmt: part_path(out, rank, world) for fmt, out in outputs.items()}
        predictor: Predictor | None = None
        own: PredictResult | None = None
        error: BaseException | None = None
        try:
            predictor = new_predictor(runtime.replace(device=str(device)))
            own = predict_shard(found, predictor, Shard(rank, world), csv_out=parts.get("csv"),
                                json_out=parts.get("json"))
        except Exception as e:  # noqa: BLE001 (shared with the others first, raised below)
            error = e
        outcomes = all_gather_object((own, None if error is None else _describe(error)),
                                     "sharing the shards' results")
        failed = [(r, message) for r, (_, message) in enumerate(outcomes) if message]
        if failed:
            if ctx.is_main:
                _remove_parts(outputs.values(), world)
            if error is not None:
                raise error
            r, message = failed[0]
            raise DistributedError(
                f"Process {r} of {world} failed: {message}",
                "see that process's error above; the parts were removed")
        assert own is not None and predictor is not None
        merged = []
        if ctx.is_main:
            merged = [merge_shards(out, [part_path(out, r, world) for r in range(world)])
                      for out in outputs.values()]
            _remove_parts(outputs.values(), world)
        return DistributedPredictResult(
            rank=rank, world_size=world, result=combine_results([o for o, _ in outcomes]),
            shard_result=own, predictor=predictor, merged=merged)
    finally:
        distributed.stop()


def _describe(error: BaseException) -> str:
    """One line for another process: the message of a babyemo error, else type: text."""
    if isinstance(error, BabyEmoError):
        return str(error)
    text = (str(error).strip().splitlines() or [""])[0][:300]
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _remove_parts(outputs: Any, world: int) -> None:
    """Remove every process's part of each output and its sidecar (missing ones are
    fine)."""
    for out in outputs:
        for r in range(world):
            part = part_path(out, r, world)
            sidecar_path(part).unlink(missing_ok=True)
            part.unlink(missing_ok=True)


__all__ = ["DEFAULT_TIMEOUT_S", "FORMATS", "SIDECAR_SUFFIX", "DistributedPredictResult",
           "MergeResult", "Shard", "ShardInfo", "combine_results", "entry_path", "entry_paths",
           "merge_shards", "part_path", "paths_sha256", "predict_distributed", "predict_shard",
           "read_sidecar", "shard_entries", "shard_outputs", "sidecar_path", "split_sizes",
           "write_sidecar"]
