"""Interruptions (issue #6): Ctrl-C and kills during ``train``, failures mid-write,
concurrent ``predict`` runs and readers of a ``best.pt`` being rewritten.

The signal tests run the real ``babyemo`` CLI in a child process (with the tiny test
architecture registered and a hook that parks it at a known point), send it a real
SIGINT or SIGKILL, then resume in this process and compare with an uninterrupted run:
on the CPU with a fixed seed, weights and metrics are bit-for-bit equal.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from babyemo import fs as bio
from babyemo.checkpoint import load_checkpoint, read_checkpoint_dict, save_checkpoint
from babyemo.cli import app
from babyemo.config import InputSpec, TrainConfig
from babyemo.runtime import Runtime
from babyemo.training import train
from tests.conftest import REPO, make_checkpoint, make_imagefolder

runner = CliRunner()
POSIX_SIGNALS = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

_CHILD = textwrap.dedent('''
    """babyemo's CLI with the tiny test arch, and an optional hook that parks the run."""
    import io, os, signal, sys, time
    sys.path.insert(0, os.environ["BABYEMO_TEST_REPO"])
    signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal
    from tests.conftest import _register_tiny_arch
    _register_tiny_arch()
    hook = os.environ.get("BABYEMO_TEST_HOOK", "")
    sentinel = os.environ.get("BABYEMO_TEST_SENTINEL", "")

    def park(go=None):
        open(sentinel, "w").close()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (go and os.path.exists(go)):
            time.sleep(0.02)  # the test signals us here (or creates the file `go`)

    if hook == "pause-in-epoch-2":  # after the first optimizer step of epoch 2
        import babyemo.training.loop as tr
        real_loader = tr.make_loader
        class Parking:
            def __init__(self, loader):
                self.loader = loader
            def __len__(self):
                return len(self.loader)
            def __iter__(self):
                for i, batch in enumerate(self.loader):
                    yield batch
                    if i == 0:
                        park()
        def loader(dataset, config, device, *, shuffle, epoch_seed=0, **kwargs):
            dl = real_loader(dataset, config, device, shuffle=shuffle, epoch_seed=epoch_seed,
                             **kwargs)
            return Parking(dl) if shuffle and epoch_seed == config.seed + 2 else dl
        tr.make_loader = loader
    elif hook == "stall-writing-last-pt-of-epoch-2":  # half of last.pt's bytes written
        import torch
        real_save = torch.save
        def save(obj, f, *args, **kwargs):
            if isinstance(obj, dict) and (obj.get("resume") or {}).get("epoch") == 2:
                buf = io.BytesIO()
                real_save(obj, buf, *args, **kwargs)
                f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
                f.flush()
                os.fsync(f.fileno())
                park()
            return real_save(obj, f, *args, **kwargs)
        torch.save = save
    elif hook == "park-mid-predict":  # two files' rows written into the temporary CSV
        from babyemo.prediction import Predictor
        real_predict = Predictor.predict_file_results
        def predict_file_results(self, files, **kwargs):
            for i, result in enumerate(real_predict(self, files, **kwargs)):
                if i == 2:
                    park(go=sentinel + ".go")
                yield result
        Predictor.predict_file_results = predict_file_results

    from babyemo.cli import main
    sys.argv = ["babyemo", *sys.argv[1:]]
    main()
''')


def _child(tmp_path: Path, args: list[str], hook: str = "", name: str = "child"
           ) -> tuple[subprocess.Popen, Path, Path]:
    """Start the CLI in a child process; returns it, its sentinel and its log file."""
    script = tmp_path / "child.py"
    if not script.exists():
        script.write_text(_CHILD, encoding="utf-8")
    sentinel, log = tmp_path / f"{name}.parked", tmp_path / f"{name}.log"
    env = {**os.environ, "BABYEMO_TEST_REPO": str(REPO), "BABYEMO_TEST_HOOK": hook,
           "BABYEMO_TEST_SENTINEL": str(sentinel), "OMP_NUM_THREADS": "1",
           "PYTHONUNBUFFERED": "1"}
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, str(script), *args], env=env, stdout=out,
                                stderr=subprocess.STDOUT, cwd=tmp_path)
    return proc, sentinel, log


def _wait_parked(proc: subprocess.Popen, sentinel: Path, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not sentinel.exists():
        if proc.poll() is not None:
            pytest.fail(f"child ended ({proc.returncode}) before parking:\n{log.read_text()}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"child did not park in {timeout} s:\n{log.read_text()}")
        time.sleep(0.05)


def _train_args(prepared: Path, arch: str, out: Path, epochs: int = 3) -> list[str]:
    return ["train", "--data", str(prepared), "--arch", arch, "--epochs", str(epochs),
            "--batch-size", "8", "--lr", "0.01", "--precision", "fp32", "--seed", "1",
            "--image-size", "24", "--workers", "0", "--cache", "none", "--out", str(out)]


def _uninterrupted(run: Path, out: Path):
    """The same run as the interrupted one (its saved config), from scratch."""
    saved = read_checkpoint_dict(run / "last.pt")["train"]["config"]
    return train(TrainConfig.from_dict({**saved, "out": str(out), "resume": False,
                                        "name": "reference"}))


def _assert_same_run(resumed_dir: Path, reference_dir: Path) -> None:
    """Bit-identical weights (last.pt, best.pt), metrics, history and calibration."""
    for name in ("last.pt", "best.pt"):
        a, b = read_checkpoint_dict(resumed_dir / name), read_checkpoint_dict(reference_dir / name)
        assert a["state_dict"].keys() == b["state_dict"].keys()
        for k, v in a["state_dict"].items():
            assert torch.equal(v, b["state_dict"][k]), (name, k)
        assert a["metrics"] == b["metrics"], name
        assert a.get("calibration") == b.get("calibration"), name
    timing = {"seconds", "images_per_s"}
    ra = read_checkpoint_dict(resumed_dir / "last.pt")["resume"]
    rb = read_checkpoint_dict(reference_dir / "last.pt")["resume"]
    assert [{k: v for k, v in row.items() if k not in timing} for row in ra["history"]] == [
        {k: v for k, v in row.items() if k not in timing} for row in rb["history"]]
    assert ra["best"] == rb["best"] and ra["stale"] == rb["stale"]

    def rows(d):
        return [{k: v for k, v in r.items() if k not in timing}
                for r in csv.DictReader((d / "metrics.csv").open(encoding="utf-8"))]

    assert rows(resumed_dir) == rows(reference_dir)


def _parked_train(prepared, tiny_arch, tmp_path: Path, hook: str):
    """Start ``babyemo train`` in a child process and wait until ``hook`` parks it;
    returns ``(run folder, process, log file)``."""
    run = tmp_path / "run"
    proc, sentinel, log = _child(tmp_path, _train_args(prepared, tiny_arch, run), hook=hook)
    _wait_parked(proc, sentinel, log)
    return run, proc, log


@pytest.fixture
def one_thread():
    """One intra-op thread in this process, as in the child (``OMP_NUM_THREADS=1``): a run
    resumed or repeated here is bit-identical to the child's only with the same float
    summation order (it passed or failed with the thread count earlier tests left)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


@POSIX_SIGNALS
def test_ctrl_c_mid_epoch_then_resume_equals_an_uninterrupted_run(prepared, tiny_arch,
                                                                  tmp_path, one_thread):
    run, proc, log = _parked_train(prepared, tiny_arch, tmp_path, "pause-in-epoch-2")
    # epoch 1 saved; epoch 2 has taken one step
    proc.send_signal(signal.SIGINT)
    assert proc.wait(60) == 130, log.read_text()
    output = log.read_text()
    assert "Interrupted" in output and "holds epoch 1" in output and "--resume" in output
    assert "Traceback" not in output
    # last.pt is a whole checkpoint of epoch 1, loadable without unpickling code
    raw = torch.load(run / "last.pt", map_location="cpu", weights_only=True)
    assert raw["resume"]["epoch"] == 1 and len(raw["resume"]["history"]) == 1
    assert _no_temp_files(run)

    result = runner.invoke(app, ["train", "--resume", "--out", str(run), "--precision", "fp32",
                                 "--workers", "0", "--cache", "none"])
    assert result.exit_code == 0, result.output
    assert read_checkpoint_dict(run / "last.pt")["resume"]["epoch"] == 3
    _assert_same_run(run, _uninterrupted(run, tmp_path / "reference").run_dir)


@POSIX_SIGNALS
def test_kill_mid_checkpoint_write_keeps_last_pt_whole_and_resumes(prepared, tiny_arch,
                                                                   tmp_path, one_thread):
    run, proc, log = _parked_train(prepared, tiny_arch, tmp_path,
                                   "stall-writing-last-pt-of-epoch-2")
    # half of epoch 2's last.pt is in a temporary file
    proc.kill()  # SIGKILL: no cleanup of any kind
    assert proc.wait(60) == -signal.SIGKILL
    partial = [p for p in run.iterdir() if p.name.startswith(".last.pt.")]
    assert len(partial) == 1 and partial[0].name.endswith(".tmp")  # the write was cut
    with pytest.raises(Exception):  # noqa: B017 - any error: the bytes are a torn file
        torch.load(partial[0], weights_only=True)
    raw = torch.load(run / "last.pt", map_location="cpu", weights_only=True)
    assert raw["resume"]["epoch"] == 1  # the final name still holds the previous epoch
    load_checkpoint(run / "best.pt")  # whole too (epoch 1 or 2)

    resumed = train(TrainConfig(resume=True, out=str(run), precision="fp32", num_workers=0,
                                cache="none"))
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3]
    assert _no_temp_files(run)  # the resume removed the torn temporary file
    _assert_same_run(run, _uninterrupted(run, tmp_path / "reference").run_dir)


@POSIX_SIGNALS
def test_sigterm_mid_checkpoint_write_cleans_up_like_ctrl_c(prepared, tiny_arch, tmp_path):
    """Issue 13: SIGTERM left hidden partial files that later runs never cleaned."""
    run, proc, log = _parked_train(prepared, tiny_arch, tmp_path,
                                   "stall-writing-last-pt-of-epoch-2")
    assert [p for p in run.iterdir() if p.name.startswith(".last.pt.")]  # mid-write
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 143, log.read_text()
    output = log.read_text()
    assert "Terminated." in output and "holds epoch 1" in output and "--resume" in output
    assert "Traceback" not in output
    assert _no_temp_files(run)  # the partial last.pt was removed by the writer itself
    raw = torch.load(run / "last.pt", map_location="cpu", weights_only=True)
    assert raw["resume"]["epoch"] == 1


# ------------------------------------------------------------- atomic writes everywhere


def _writers(tmp_path: Path, tiny_arch: str) -> dict:
    """One call per kind of file babyemo writes, each to a new path in ``tmp_path``."""
    from babyemo import reports
    from babyemo.data.loading.image_cache import DiskCache
    from babyemo.data.preparation.manifest import ManifestRow, new_info, write_manifest
    from babyemo.data.sources.archives import extract_with_record
    from babyemo.models.registry import create_model
    from tests.data.helpers import zip_folder

    model = create_model(tiny_arch, num_classes=2)
    history = [{"epoch": 1, "train_loss": 1.0, "val_loss": 1.1, "train_acc": 0.5,
                "val_acc": 0.4, "val_macro_f1": 0.3, "lr": 0.01}]
    row = ManifestRow("a/x.png", "a", "train", "ab", 1, 1, "PNG", "00")
    archive = zip_folder(make_imagefolder(tmp_path / "zsrc", classes=("a",), per_class=1),
                         tmp_path / "z.zip")
    from PIL import Image

    return {
        "checkpoint.pt": lambda p: save_checkpoint(
            p, model=model, arch=tiny_arch, arch_kwargs={}, class_names=["a", "b"],
            input_spec=InputSpec(size=24), train={}, metrics={}),
        "manifest.csv": lambda p: write_manifest([row], p.parent,
                                                 new_info("x", tmp_path, "x", ["a"])),
        "metrics.csv": lambda p: reports.write_csv_rows(p, ["a", "b"], [[1, 2], [3, 4]]),
        "report.json": lambda p: reports.write_json({"a": [1, 2]}, p),
        "curves.png": lambda p: reports.plot_curves(history, p),
        "confusion.csv": lambda p: reports.write_confusion_csv([[1, 0], [0, 1]], ["a", "b"], p),
        "notes.txt": lambda p: bio.atomic_write_text(p, "text"),
        "cache.npy": lambda p: DiskCache(p.parent).put("ab" + "0" * 14,
                                                       Image.new("RGB", (4, 4))),
        ".babyemo-source.json": lambda p: extract_with_record(archive, p.parent, p.name,
                                                              {"url": "x"}),
    }


WRITERS = ["checkpoint.pt", "manifest.csv", "metrics.csv", "report.json", "curves.png",
           "confusion.csv", "notes.txt", "cache.npy", ".babyemo-source.json"]


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), KeyboardInterrupt])
@pytest.mark.parametrize("name", WRITERS)
def test_a_failure_mid_write_leaves_no_file_under_the_final_name(tmp_path, tiny_arch,
                                                                 monkeypatch, name, error):
    write = _writers(tmp_path, tiny_arch)[name]
    folder = tmp_path / "out"
    folder.mkdir()
    target = folder / name
    written = []

    def failing_fsync(fd):  # every byte is in the temporary file; the rename never happens
        written.append(os.fstat(fd).st_size)
        raise error

    monkeypatch.setattr(bio.os, "fsync", failing_fsync)
    with pytest.raises((OSError, KeyboardInterrupt)):
        write(target)
    assert written and written[0] > 0, "the write did not go through babyemo.fs"
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert not [p for p in files if p.name == name or p.suffix == ".npy"], files
    assert not [p for p in files if p.name.endswith(".tmp")], files  # and no temp left


def test_a_failing_write_keeps_the_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "metrics.csv"
    bio.atomic_write_text(target, "old\n")
    monkeypatch.setattr(bio.os, "replace", lambda *a: (_ for _ in ()).throw(OSError("EIO")))
    with pytest.raises(OSError):
        bio.atomic_write_text(target, "new\n")
    assert target.read_text() == "old\n" and sorted(os.listdir(tmp_path)) == ["metrics.csv"]


def test_written_files_get_normal_permissions(tmp_path):
    """Temporary files are created 0600; the final file gets 0666 & ~umask like open()."""
    umask = os.umask(0o022)
    os.umask(umask)
    fresh = tmp_path / "a.txt"
    bio.atomic_write_text(fresh, "x")
    assert (fresh.stat().st_mode & 0o777) == 0o666 & ~umask
    fresh.chmod(0o640)
    bio.atomic_write_text(fresh, "y")  # a replaced file keeps its permissions
    assert (fresh.stat().st_mode & 0o777) == 0o640


def test_remove_stale_temps_only_removes_atomic_temporaries(tmp_path):
    keep = ["last.pt", ".hidden", "x.tmp", ".last.pt.tmp", ".a.b.tmp"]
    stale = [".last.pt.k2j4_9zq.tmp", ".metrics.csv.abcdefgh.tmp"]
    for name in keep + stale:
        (tmp_path / name).write_text("x")
    (tmp_path / ".dir.abcdefgh.tmp").mkdir()
    assert sorted(p.name for p in bio.remove_stale_temps(tmp_path)) == sorted(stale)
    assert sorted(os.listdir(tmp_path)) == sorted([*keep, ".dir.abcdefgh.tmp"])
    assert bio.remove_stale_temps(tmp_path / "missing") == []


def test_prediction_csv_is_absent_when_the_run_fails_midway(tmp_path, tiny_arch, monkeypatch):
    from babyemo.prediction import Predictor, predict_to_files

    ckpt = make_checkpoint(tmp_path / "m.pt", tiny_arch)
    photos = make_imagefolder(tmp_path / "photos", per_class=3)
    predictor = Predictor(ckpt, runtime=Runtime(device="cpu", precision="fp32", workers=0))
    real = predictor.predict_file_results

    def failing(files, **kwargs):
        for i, result in enumerate(real(files, **kwargs)):
            if i == 4:
                raise KeyboardInterrupt
            yield result

    monkeypatch.setattr(predictor, "predict_file_results", failing)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        predict_to_files([photos], predictor, csv_out=out / "p.csv", json_out=out / "p.json")
    assert sorted(os.listdir(out)) == []


# ------------------------------------------------------------------------- concurrency


def test_two_predict_runs_at_once_write_their_own_csvs(tmp_path, tiny_arch):
    """A child ``babyemo predict`` is parked half-way through its CSV while this process
    runs another ``babyemo predict`` into the same folder; both CSVs come out whole."""
    from babyemo.prediction import Predictor, predict_to_files

    ckpt = make_checkpoint(tmp_path / "m.pt", tiny_arch)
    sets = [make_imagefolder(tmp_path / f"photos{i}", per_class=4 + 3 * i) for i in (0, 1)]
    out = tmp_path / "out"
    out.mkdir()
    common = ["--checkpoint", str(ckpt), "--device", "cpu", "--precision", "fp32",
              "--workers", "0", "--batch-size", "2"]
    proc, sentinel, log = _child(tmp_path, ["-q", "predict", str(sets[0]), "--csv",
                                            str(out / "p0.csv"), *common],
                                 hook="park-mid-predict")
    _wait_parked(proc, sentinel, log)
    assert [p.name.startswith(".p0.csv.") for p in out.iterdir()] == [True]  # mid-write
    result = runner.invoke(app, ["-q", "predict", str(sets[1]), "--csv", str(out / "p1.csv"),
                                 *common])
    assert result.exit_code == 0, result.output
    Path(f"{sentinel}.go").touch()
    assert proc.wait(120) == 0, log.read_text()
    assert sorted(os.listdir(out)) == ["p0.csv", "p1.csv"]
    predictor = Predictor(ckpt,
                          runtime=Runtime(device="cpu", precision="fp32", workers=0, batch_size=2))
    for i in (0, 1):
        expected = tmp_path / f"expected{i}.csv"
        predict_to_files([sets[i]], predictor, csv_out=expected)
        got = list(csv.DictReader((out / f"p{i}.csv").open(encoding="utf-8")))
        assert len(got) == 3 * (4 + 3 * i)
        assert got == list(csv.DictReader(expected.open(encoding="utf-8")))


def test_threads_writing_the_same_csv_leave_one_whole_file(tmp_path, tiny_arch):
    from babyemo.prediction import Predictor, predict_to_files

    ckpt = make_checkpoint(tmp_path / "m.pt", tiny_arch)
    sets = [make_imagefolder(tmp_path / f"photos{i}", per_class=3 + 2 * i) for i in (0, 1)]
    target = tmp_path / "same.csv"
    errors = []

    def run(i):
        try:
            predictor = Predictor(ckpt, runtime=Runtime(device="cpu", precision="fp32", workers=0))
            for _ in range(3):
                predict_to_files([sets[i]], predictor, csv_out=target)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    n_rows = len(list(csv.DictReader(target.open(encoding="utf-8"))))
    assert n_rows in (9, 15)  # one run's whole output, never a mix or a torn file
    assert sorted(os.listdir(tmp_path)) == ["m.pt", "photos0", "photos1", "same.csv"]


def test_readers_see_whole_checkpoints_while_one_is_rewritten(tmp_path, tiny_arch):
    from babyemo.models.registry import create_model

    models = [create_model(tiny_arch, num_classes=3) for _ in range(2)]
    with torch.no_grad():
        for i, m in enumerate(models):
            for p in m.parameters():
                p.fill_(float(i))
    path = tmp_path / "best.pt"

    def save(i):
        save_checkpoint(path, model=models[i], arch=tiny_arch, arch_kwargs={},
                        class_names=["a", "b", "c"], input_spec=InputSpec(size=24),
                        train={"version": i}, metrics={"version": i})

    save(0)
    stop, seen, errors = threading.Event(), set(), []

    def writer():
        for n in range(40):
            save(n % 2)
        stop.set()

    def reader():
        while not stop.is_set():
            try:
                ckpt = load_checkpoint(path)
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)
                return
            v = ckpt.metrics["version"]
            seen.add(v)
            assert all(torch.equal(t, models[v].state_dict()[k])
                       for k, t in ckpt.state_dict.items())

    threads = [threading.Thread(target=writer), threading.Thread(target=reader),
               threading.Thread(target=reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[0]
    assert seen and seen <= {0, 1}
    assert sorted(os.listdir(tmp_path)) == ["best.pt"]


_READER = textwrap.dedent('''
    """Read best.pt in a loop until told to stop; report reads and errors as JSON."""
    import json, os, sys, time
    sys.path.insert(0, os.environ["BABYEMO_TEST_REPO"])
    from babyemo.checkpoint import read_checkpoint_dict
    best, ready, stop, report = sys.argv[1:5]
    reads, epochs, errors = 0, set(), []
    open(ready, "w").close()
    while not os.path.exists(stop):
        if os.path.exists(best):
            try:
                epochs.add(read_checkpoint_dict(best)["metrics"]["epoch"])
                reads += 1
            except BaseException as e:
                errors.append(repr(e))
        time.sleep(0.01)
    with open(report, "w") as f:
        json.dump({"reads": reads, "epochs": sorted(epochs), "errors": errors}, f)
''')


def test_another_process_reads_best_pt_while_train_runs(prepared, tiny_arch, tmp_path):
    run = tmp_path / "run"
    script = tmp_path / "reader.py"
    script.write_text(_READER, encoding="utf-8")
    ready, stop, report = tmp_path / "ready", tmp_path / "stop", tmp_path / "report.json"
    env = {**os.environ, "BABYEMO_TEST_REPO": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(script), str(run / "best.pt"), str(ready),
                             str(stop), str(report)], env=env)
    try:
        deadline = time.monotonic() + 90
        while not ready.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "reader did not start"
            time.sleep(0.05)
        train(TrainConfig(data=str(prepared), arch=tiny_arch, image_size=None, epochs=6,
                          batch_size=8, lr=0.05, precision="fp32", num_workers=0,
                          out=str(run)))
    finally:
        stop.touch()
        assert proc.wait(60) == 0
    seen = json.loads(report.read_text())
    assert seen["errors"] == []  # never a torn, half-renamed or missing best.pt
    assert seen["reads"] > 0 and seen["epochs"]
    assert load_checkpoint(run / "best.pt").calibration is not None  # the last rewrite
