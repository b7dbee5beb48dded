"""Sharded prediction (issue 16): the split, the sidecar, every refusal of the merge, and
merged == unsharded, row for row, with synthetic images and a tiny checkpoint."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from babyemo.data.loading.folders import EntryError, collect_input_files, find_input_files
from babyemo.errors import ConfigError, DataError
from babyemo.faces import register_detector
from babyemo.prediction import Predictor, PredictResult, predict_to_files
from babyemo.prediction_shards import (
    Shard,
    ShardInfo,
    combine_results,
    entry_paths,
    merge_shards,
    part_path,
    paths_sha256,
    predict_shard,
    read_sidecar,
    shard_entries,
    sidecar_path,
    split_sizes,
    write_sidecar,
)
from babyemo.runtime import Runtime
from tests.conftest import make_checkpoint, make_image

TWO_FACES = "shards_two_faces"


class _TwoFaces:
    """Two faces in a reddish image, one in the others, none in a white-cornered one."""

    name = TWO_FACES

    def detect(self, image):
        from babyemo.faces import Face

        rgb = image.convert("RGB")
        corner = rgb.getpixel((0, 0))
        if corner == (255, 255, 255):
            return []
        w, h = image.size
        faces = [Face(box=(w * 0.1, h * 0.1, w * 0.5, h * 0.5), score=0.9)]
        if corner[0] > 150:
            faces.append(Face(box=(w * 0.4, h * 0.4, w * 0.5, h * 0.5), score=0.8))
        return faces


register_detector(TWO_FACES, description="test: two faces in reddish images")(_TwoFaces)


# --- the split ---------------------------------------------------------------------------

@pytest.mark.parametrize("total", [0, 1, 2, 5, 10, 11, 300])
@pytest.mark.parametrize("count", [1, 2, 3, 7, 13])
def test_split_sizes_are_numpy_array_split_s(total, count):
    sizes = split_sizes(total, count)
    assert sizes == [len(c) for c in np.array_split(np.arange(total), count)]
    assert sum(sizes) == total and len(sizes) == count and max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize(("total", "count"), [(10, 3), (2, 5), (0, 2), (7, 1)])
def test_shards_cover_the_list_once_contiguously_and_deterministically(total, count):
    items = list(range(total))
    chunks = [items[slice(*Shard(i, count).bounds(total))] for i in range(count)]
    assert [x for c in chunks for x in c] == items  # every entry once, in order
    assert chunks == [items[slice(*Shard(i, count).bounds(total))] for i in range(count)]
    if count > total:
        assert chunks[-1] == []  # an empty shard is a shard


def test_shard_parse_and_validation():
    assert Shard.parse("0/3") == Shard(0, 3) and Shard.parse(" 2 / 3 ") == Shard(2, 3)
    assert str(Shard.parse("0/1")) == "0/1"
    for bad in ("3/3", "-1/3", "0/0", "1/0", "a/3", "1", "1/2/3", "", "1.0/2"):
        with pytest.raises(ConfigError) as e:
            Shard.parse(bad)
        assert e.value.hint
    with pytest.raises(ConfigError, match="0-based, 0 to 1"):
        Shard(2, 2)
    with pytest.raises(ConfigError):
        Shard(True, 2)


def test_paths_sha256_sees_order_and_cuts():
    assert paths_sha256(["a", "b"]) != paths_sha256(["b", "a"])
    assert paths_sha256(["ab", "c"]) != paths_sha256(["a", "bc"])
    assert paths_sha256([]) == paths_sha256([])


def _folder(tmp_path: Path) -> Path:
    """12 images in nested folders, created out of name order, plus an unreadable file, a
    broken link, a hidden file and a readme (skipped)."""
    d = tmp_path / "photos"
    colors = [(220, 40, 40), (40, 40, 220), (40, 200, 40), (255, 255, 255)]
    names = ["k.png", "b.png", "z/c.png", "a/d.png", "a/a.png", "m.png", "c.png", "z/a.png",
             "a/b/e.png", "e.png", "d.png", "y.png"]
    for i, name in enumerate(names):
        make_image(d / name, color=colors[i % len(colors)])
    (d / "f_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut")
    (d / "g_dangling.png").symlink_to(d / "nowhere.png")
    (d / ".hidden.png").write_bytes(b"x")
    (d / "readme.txt").write_text("lab photos")
    return d


def test_folder_walks_are_sorted_whatever_order_the_file_system_lists(tmp_path, monkeypatch):
    """The list a shard is cut from is the same on every machine: scandir's order (the
    file system's) does not matter, names are sorted."""
    d = _folder(tmp_path)
    first = entry_paths(find_input_files([d]))
    real_scandir = os.scandir

    class _Reversed:
        def __init__(self, path):
            self._it = real_scandir(path)

        def __enter__(self):
            return reversed(list(self._it))

        def __exit__(self, *exc):
            self._it.close()

    monkeypatch.setattr(os, "scandir", _Reversed)
    assert entry_paths(find_input_files([d])) == first
    rel = [Path(p).relative_to(d).as_posix() for p in first]
    assert rel == ["b.png", "c.png", "d.png", "e.png", "f_broken.jpg", "g_dangling.png",
                   "k.png", "m.png", "y.png", "a/a.png", "a/d.png", "a/b/e.png", "z/a.png",
                   "z/c.png"]


def test_shard_entries_keep_error_entries_and_the_walks_counts(tmp_path):
    found = collect_input_files([_folder(tmp_path)])
    assert len(found.entries) == 14 and found.hidden == 1 and len(found.non_images) == 1
    parts = [shard_entries(found, Shard(i, 3)) for i in range(3)]
    assert [len(p.entries) for p in parts] == [5, 5, 4]
    assert [e for p in parts for e in p.entries] == found.entries
    assert any(isinstance(e, EntryError) for e in parts[1].entries)  # the dangling link
    assert all(p.hidden == 1 and p.folders == found.folders for p in parts)


def test_sidecar_round_trip_and_bad_sidecars(tmp_path):
    out = tmp_path / "p.csv"
    info = ShardInfo(shard=1, shards=3, total=5, list_sha256="0" * 64, paths=("a", "b"),
                     rows=3, checkpoint_sha256="f" * 64)
    assert write_sidecar(out, info) == sidecar_path(out) == tmp_path / "p.csv.shard.json"
    assert read_sidecar(out) == info
    data = json.loads(sidecar_path(out).read_text())
    assert data["babyemo_shard"] == 1 and data["paths"] == ["a", "b"]
    for broken in ("[]", "{", json.dumps({**data, "shard": 3}),
                   json.dumps({**data, "list_sha256": "x"}), json.dumps({**data, "format": "x"}),
                   json.dumps({**data, "babyemo_shard": 2}), json.dumps({**data, "rows": -1}),
                   json.dumps({**data, "paths": ["a"] * 6})):
        sidecar_path(out).write_text(broken)
        with pytest.raises(DataError) as e:
            read_sidecar(out)
        assert "--shard" in e.value.hint
    with pytest.raises(DataError, match="no sidecar"):
        read_sidecar(tmp_path / "other.csv")
    assert part_path(tmp_path / "o.csv", 1, 4) == tmp_path / "o.csv.part-1-of-4.csv"
    assert part_path(tmp_path / "o", 0, 2).name == "o.part-0-of-2.csv"


# --- predicting shards and merging them ----------------------------------------------------

@pytest.fixture
def predictor(tiny_arch, tmp_path):
    model = make_checkpoint(tmp_path / "m.pt", tiny_arch)
    # one file per batch: a batch then holds the same images whether the list is cut or
    # not, so the probabilities are the same to the last bit (with larger batches a cut
    # changes which images share one, and float rounding may differ in the last bit)
    return Predictor(model, runtime=Runtime(device="cpu", precision="fp32", batch_size=1),
                     faces=TWO_FACES)


def _shards(found, predictor, folder: Path, n: int, *, json_too: bool = False) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    parts = []
    for i in range(n):
        out = folder / f"part{i}.csv"
        predict_shard(found, predictor, Shard(i, n), csv_out=out,
                      json_out=folder / f"part{i}.json" if json_too else None)
        parts.append(out)
    return parts


@pytest.mark.parametrize("n", [1, 3, 20])
def test_merged_shards_equal_the_unsharded_run_row_for_row(predictor, tmp_path, n):
    found = collect_input_files([_folder(tmp_path)])
    whole = tmp_path / "whole.csv"
    predict_to_files(found, predictor, csv_out=whole, json_out=tmp_path / "whole.json")
    text = whole.read_text(encoding="utf-8")
    paths = [r["path"] for r in csv.DictReader(text.splitlines())]
    assert len(paths) > 14  # reddish photos: two rows, one per face
    parts = _shards(found, predictor, tmp_path / "parts", n, json_too=True)
    result = merge_shards(tmp_path / "merged.csv", list(reversed(parts)))  # any order
    assert (tmp_path / "merged.csv").read_bytes() == whole.read_bytes()
    assert (result.shards, result.n_entries, result.n_rows, result.format) == (
        n, 14, len(paths), "csv")
    assert result.parts == parts
    merged_json = merge_shards(tmp_path / "merged.json", [p.with_suffix(".json") for p in parts])
    assert (tmp_path / "merged.json").read_text() == (tmp_path / "whole.json").read_text()
    assert merged_json.format == "json" and merged_json.n_rows == len(paths)
    if n == 20:  # more shards than entries: empty shards are parts with the header only
        assert (tmp_path / "parts" / "part19.csv").read_text().count("\n") == 1
        assert read_sidecar(tmp_path / "parts" / "part19.csv").paths == ()


def test_the_sidecar_says_which_part_of_which_list(predictor, tmp_path):
    found = collect_input_files([_folder(tmp_path)])
    summary = predict_shard(found, predictor, Shard(1, 3), csv_out=tmp_path / "p.csv")
    info = read_sidecar(tmp_path / "p.csv")
    everything = entry_paths(found)
    assert (info.shard, info.shards, info.total, info.format) == (1, 3, 14, "csv")
    assert info.list_sha256 == paths_sha256(everything)
    assert list(info.paths) == everything[5:10]
    assert info.rows == summary.n_rows == len(list(csv.DictReader((tmp_path / "p.csv").open())))
    assert summary.n_files == 5 and summary.n_hidden_skipped == 1
    from babyemo.fs import sha256_file

    assert info.checkpoint_sha256 == sha256_file(predictor.checkpoint.path)


def test_shards_name_their_face_crops_as_one_run_does(tiny_arch, tmp_path):
    found = collect_input_files([_folder(tmp_path)])
    model = make_checkpoint(tmp_path / "m.pt", tiny_arch)
    runtime = Runtime(device="cpu", precision="fp32", batch_size=2)
    whole = Predictor(model, runtime=runtime, faces=TWO_FACES, save_crops=tmp_path / "one")
    predict_to_files(found, whole, csv_out=tmp_path / "whole.csv")
    sharded = Predictor(model, runtime=runtime, faces=TWO_FACES, save_crops=tmp_path / "three")
    _shards(found, sharded, tmp_path / "parts", 3)
    names = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert len(names) > 10 and sorted(p.name for p in (tmp_path / "three").iterdir()) == names
    # a/b/e.png in shard 2/3: the 11th file of the whole list (the broken link is no file)
    assert "000010_e_face0.png" in names and "000010_e_face1.png" in names


def test_a_shard_needs_a_file_output(predictor, tmp_path):
    import io

    found = collect_input_files([_folder(tmp_path)])
    for kwargs in ({}, {"csv_out": io.StringIO()}, {"csv_out": "-"}):
        with pytest.raises(ConfigError, match="not to stdout"):
            predict_shard(found, predictor, Shard(0, 2), **kwargs)


@pytest.fixture
def parts(predictor, tmp_path):
    """The three CSV parts of the synthetic folder, and the unsharded CSV."""
    found = collect_input_files([_folder(tmp_path)])
    predict_to_files(found, predictor, csv_out=tmp_path / "whole.csv")
    return _shards(found, predictor, tmp_path / "parts", 3)


def _rewrite(part: Path, edit) -> None:
    """Rewrite a part's rows (not its sidecar) through ``edit(rows) -> rows``."""
    with part.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    with part.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([rows[0], *edit(rows[1:])])


def _refused(out: Path, parts: list[Path], match: str) -> DataError:
    with pytest.raises(DataError, match=match) as e:
        merge_shards(out, parts)
    assert e.value.hint and not out.exists()
    return e.value


def test_merge_refuses_a_part_without_sidecar(parts, tmp_path):
    sidecar_path(parts[1]).unlink()
    _refused(tmp_path / "m.csv", parts, "part1.csv has no sidecar part1.csv.shard.json")
    _refused(tmp_path / "m.csv", [*parts[:1], tmp_path / "nope.csv"], "No such part")


def test_merge_refuses_parts_of_different_splits(predictor, parts, tmp_path):
    found = collect_input_files([tmp_path / "photos"])
    other = _shards(found, predictor, tmp_path / "four", 4)
    _refused(tmp_path / "m.csv", [parts[0], parts[1], other[2]], "number of shards differ")
    fewer = collect_input_files(sorted(p for p in (tmp_path / "photos").glob("*.png")
                                       if p.exists()))
    other = _shards(fewer, predictor, tmp_path / "fewer", 3)
    _refused(tmp_path / "m.csv", [parts[0], parts[1], other[2]], "number of entries differ")
    # the same count, another list (another folder order, other names): the hash differs
    info = read_sidecar(parts[2])
    write_sidecar(parts[2], ShardInfo(**{**info.__dict__, "list_sha256": "1" * 64}))
    _refused(tmp_path / "m.csv", parts, "list of entries differ")


def test_merge_refuses_parts_of_another_model(parts, tmp_path):
    info = read_sidecar(parts[0])
    write_sidecar(parts[0], ShardInfo(**{**info.__dict__, "checkpoint_sha256": "2" * 64}))
    _refused(tmp_path / "m.csv", parts, r"model \(checkpoint SHA-256\) differ")


def test_merge_refuses_a_missing_or_twice_given_shard(parts, tmp_path):
    e = _refused(tmp_path / "m.csv", [parts[0], parts[2]], "1 of 3 shards missing: 1/3")
    assert "--shard" in e.hint
    _refused(tmp_path / "m.csv", [parts[0], parts[1], parts[1], parts[2]],
             "Shard 1/3 is given twice")
    copy = tmp_path / "copy.csv"
    shutil.copy(parts[1], copy)
    shutil.copy(sidecar_path(parts[1]), sidecar_path(copy))
    _refused(tmp_path / "m.csv", [*parts, copy], "Shard 1/3 is given twice")


def test_merge_refuses_a_file_in_two_parts(parts, tmp_path):
    rows0 = list(csv.reader(parts[0].open(newline="", encoding="utf-8")))[1:]
    stolen = rows0[-1]
    _rewrite(parts[1], lambda rows: [stolen, *rows])
    _refused(tmp_path / "m.csv", parts, "belongs to shard 0/3 .*: a file in two parts")


def test_merge_refuses_a_part_lacking_a_file(parts, tmp_path):
    paths = read_sidecar(parts[2]).paths
    _rewrite(parts[2], lambda rows: [r for r in rows if r[0] != paths[-1]])
    _refused(tmp_path / "m.csv", parts, "has no row of 1 of its 4 files")


def test_merge_refuses_rows_out_of_order_or_a_changed_row_count(parts, tmp_path):
    _rewrite(parts[2], lambda rows: rows[::-1])
    _refused(tmp_path / "m.csv", parts, "not in the order")
    _rewrite(parts[2], lambda rows: rows[::-1])  # back in order
    _rewrite(parts[2], lambda rows: [*rows, rows[-1]])  # one more row of its last file
    _refused(tmp_path / "m.csv", parts, "holds .* rows, its sidecar says")


def test_merge_refuses_other_columns_and_edited_sidecars(parts, tmp_path):
    with parts[1].open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    rows[0][1] = "lable"
    with parts[1].open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    _refused(tmp_path / "m.csv", parts, "other columns")
    info0, info1 = read_sidecar(parts[0]), read_sidecar(parts[1])
    write_sidecar(parts[0], ShardInfo(**{**info0.__dict__, "paths": info0.paths[:-1]}))
    write_sidecar(parts[1], ShardInfo(**{**info1.__dict__,
                                         "paths": info0.paths[-1:] + info1.paths}))
    _refused(tmp_path / "m.csv", parts, "lists 4 entries; shard 0/3 of 14 holds 5")


def test_merge_refuses_to_write_over_a_part(parts):
    with pytest.raises(ConfigError, match="one of the command's inputs"):
        merge_shards(parts[0], parts)


def test_merge_replaces_its_output_and_drops_a_stale_sidecar(parts, tmp_path):
    out = tmp_path / "m.csv"
    out.write_text("old")
    sidecar_path(out).write_text("{}")
    merge_shards(out, parts)
    assert out.read_bytes() == (tmp_path / "whole.csv").read_bytes()
    assert not sidecar_path(out).exists()


def test_combine_results_sums_counts_and_takes_the_longest_wall_time():
    a = PredictResult(n_files=3, n_rows=4, n_errors=1, n_multi_face=1, n_hidden_skipped=2,
                      n_non_image_skipped=1, error_counts={"truncated": 1},
                      label_counts={"happy": 3}, seconds=2.0, load_seconds=1.0,
                      detect_seconds=0.5, parallel_readers=2)
    b = PredictResult(n_files=2, n_rows=2, n_no_face=1, n_hidden_skipped=2,
                      n_non_image_skipped=1, label_counts={"angry": 1, "happy": 1},
                      seconds=3.0, load_seconds=0.5, detect_seconds=0.25, parallel_readers=2)
    c = combine_results([a, b])
    assert (c.n_files, c.n_rows, c.n_errors, c.n_no_face, c.n_multi_face) == (5, 6, 1, 1, 1)
    assert (c.n_hidden_skipped, c.n_non_image_skipped) == (2, 1)  # the walk's, not summed
    assert c.label_counts == {"angry": 1, "happy": 4} and c.error_counts == {"truncated": 1}
    assert (c.seconds, c.load_seconds, c.detect_seconds, c.parallel_readers) == (
        3.0, 1.0, 0.75, 4)


def test_under_torchrun_a_failed_process_fails_every_process_and_leaves_no_part(
        predictor, tmp_path, monkeypatch):
    """Rank 0 of 2 (a faked process group): its own part is written, then the outcomes
    are shared; process 1 failed, so rank 0 raises its message and removes the parts."""
    import torch

    from babyemo import distributed, prediction_shards
    from babyemo.errors import DistributedError

    found = collect_input_files([_folder(tmp_path)])
    out = tmp_path / "out.csv"
    stopped = []
    monkeypatch.setattr(distributed, "start", lambda device, timeout_s: (
        distributed.DistContext(rank=0, world_size=2), torch.device("cpu")))
    monkeypatch.setattr(distributed, "stop", lambda: stopped.append(True))

    def gather(obj, doing):
        assert part_path(out, 0, 2).is_file() and sidecar_path(part_path(out, 0, 2)).is_file()
        part_path(out, 1, 2).write_text("half written")
        return [obj, (None, "CheckpointError: m.pt: not a readable checkpoint")]

    monkeypatch.setattr(prediction_shards, "all_gather_object", gather)
    devices = []

    def new_predictor(runtime):
        devices.append(runtime.device)
        return predictor

    with pytest.raises(DistributedError, match="Process 1 of 2 failed: CheckpointError"):
        prediction_shards.predict_distributed(found, new_predictor, runtime=Runtime(),
                                              csv_out=out)
    assert devices == ["cpu"] and stopped == [True]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt", "photos"]
    with pytest.raises(ConfigError, match="not to stdout"):
        prediction_shards.predict_distributed(found, new_predictor, runtime=Runtime())
