import pytest

from babyemo.fs import atomic_open, atomic_write_text


def test_atomic_write_replaces_whole_file(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    atomic_write_text(target, "first")
    atomic_write_text(target, "second")
    assert target.read_text() == "second"
    assert [p.name for p in target.parent.iterdir()] == ["out.txt"]


def test_failed_write_leaves_old_file_and_no_temp(tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_open(target, "w") as f:
            f.write("partial")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_update_json_object_keeps_a_backup_and_refuses_corrupt_files(tmp_path):
    from babyemo.errors import StateError
    from babyemo.fs import read_json_object, update_json_object

    target = tmp_path / "state.json"
    assert read_json_object(target) == {}
    update_json_object(target, lambda d: d.update(a=1))
    update_json_object(target, lambda d: d.update(b=2))
    assert read_json_object(target) == {"a": 1, "b": 2}
    assert read_json_object(tmp_path / "state.json.bak") == {"a": 1}
    target.write_text("[1, 2]")
    with pytest.raises(StateError, match="not hold a JSON object"):
        update_json_object(target, lambda d: d.update(c=3))
    assert target.read_text() == "[1, 2]"


def test_file_lock_times_out_with_a_clear_error(tmp_path):
    import subprocess
    import sys

    from babyemo.errors import StateError
    from babyemo.fs import file_lock

    target = tmp_path / "models.json"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom babyemo.fs import file_lock\n"
         f"with file_lock({str(target)!r}):\n    print('held', flush=True)\n    time.sleep(30)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(StateError, match="Another babyemo process"):
            with file_lock(target, timeout=0.2):
                pass
    finally:
        holder.kill()
        holder.wait()
    with file_lock(target, timeout=5):  # released when its holder died
        pass
