"""Output paths that are not plain new files (issue 13), at the level of
:func:`babyemo.fs.atomic_open` and of the one output guard,
:func:`babyemo.data.loading.folders.check_outputs`.

Special files are made in ``tmp_path`` (a FIFO with ``os.mkfifo``; character devices with
``os.mknod`` where permitted, as copies of the null and full devices' numbers): never the
machine's own ``/dev`` entries. The CLI's cells of the case table are in
``tests/cli/test_hostile_outputs.py``.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
import threading
from pathlib import Path

import pytest

from babyemo.data.loading.folders import check_outputs
from babyemo.errors import ConfigError
from babyemo.fs import FILE, STREAM, atomic_open, atomic_write_text, output_target

NULL_DEVICE = (1, 3)
"""Major and minor numbers of Linux's null device (writes are discarded)."""
FULL_DEVICE = (1, 7)
"""Major and minor numbers of Linux's full device (writes fail with ENOSPC)."""


def make_char_device(path: Path, numbers: tuple[int, int]) -> Path:
    """A character device node at ``path`` (skip the test where mknod is not permitted)."""
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(*numbers))
    except (PermissionError, OSError) as e:
        pytest.skip(f"cannot make a character device here: {e}")
    return path


def make_block_device(path: Path) -> Path:
    """A block device node with numbers no disk has (never opened by the tests)."""
    try:
        os.mknod(path, stat.S_IFBLK | 0o600, os.makedev(250, 250))
    except (PermissionError, OSError) as e:
        pytest.skip(f"cannot make a block device here: {e}")
    return path


def make_socket(path: Path) -> Path:
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    sock.close()
    return path


class FifoReader:
    """Read everything written to a FIFO, in a thread (a writer's open waits for it)."""

    def __init__(self, path: Path, close_at_once: bool = False) -> None:
        self.data = b""
        self._path, self._close_at_once = path, close_at_once
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        with open(self._path, "rb") as f:
            if not self._close_at_once:
                self.data = f.read()

    def join(self) -> bytes:
        self._thread.join(10)
        assert not self._thread.is_alive(), "the FIFO reader is still waiting"
        return self.data


def test_a_fifo_is_written_through_and_stays_a_fifo(tmp_path):
    fifo = tmp_path / "out.csv"
    os.mkfifo(fifo)
    reader = FifoReader(fifo)
    with atomic_open(fifo, "w", newline="") as f:
        f.write("path,label\n" * 3)
    assert reader.join() == b"path,label\n" * 3
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]  # no temporary file


def test_a_fifo_whose_reader_goes_away_is_a_clear_error(tmp_path):
    fifo = tmp_path / "out.csv"
    os.mkfifo(fifo)
    reader = FifoReader(fifo, close_at_once=True)
    with pytest.raises(ConfigError, match=r"Cannot write .*out.csv: Broken pipe"):
        with atomic_open(fifo, "wb") as f:
            for _ in range(64):  # more than a pipe holds: waits for the reader, who left
                f.write(b"x" * 65536)
    reader.join()
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_a_null_device_is_a_sink_and_stays_a_device(tmp_path):
    null = make_char_device(tmp_path / "null", NULL_DEVICE)
    assert output_target(null) == (STREAM, null)
    atomic_write_text(null, "discarded\n" * 1000)
    assert stat.S_ISCHR(os.lstat(null).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["null"]


def test_a_full_device_is_a_clear_error_and_stays_a_device(tmp_path):
    full = make_char_device(tmp_path / "full", FULL_DEVICE)
    with pytest.raises(ConfigError, match=r"Cannot write .*full: No space left on device"):
        atomic_write_text(full, "x")  # buffered: fails when the file is flushed at the end
    with pytest.raises(ConfigError, match="No space left"):
        with atomic_open(full, "wb") as f:
            f.write(b"x" * (1 << 20))  # larger than the buffer: fails in the write itself
    assert stat.S_ISCHR(os.lstat(full).st_mode)


def test_only_the_devices_own_errors_are_converted(tmp_path):
    null = make_char_device(tmp_path / "null", NULL_DEVICE)
    with pytest.raises(OSError) as caught:
        with atomic_open(null, "w"):
            raise OSError(errno.ENOSPC, "another file is full")
    assert not isinstance(caught.value, ConfigError)


def test_a_symlink_is_followed_and_stays_a_link(tmp_path):
    target = tmp_path / "data" / "target.csv"
    target.parent.mkdir()
    target.write_text("old")
    target.chmod(0o640)
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    assert output_target(link) == (FILE, target)
    atomic_write_text(link, "new")
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text() == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640  # the target's permissions kept
    assert sorted(p.name for p in target.parent.iterdir()) == ["target.csv"]


def test_a_dangling_symlink_creates_its_target(tmp_path):
    link = tmp_path / "link.csv"
    link.symlink_to(tmp_path / "new" / "target.csv")
    atomic_write_text(link, "made")
    assert link.is_symlink()
    assert (tmp_path / "new" / "target.csv").read_text() == "made"


@pytest.mark.parametrize("kind", ["folder", "socket", "block device", "symlink loop"])
def test_kinds_that_are_refused_are_left_alone(tmp_path, kind):
    path = tmp_path / "out"
    if kind == "folder":
        path.mkdir()
    elif kind == "socket":
        make_socket(path)
    elif kind == "block device":
        make_block_device(path)
    else:
        path.symlink_to(path)
    before = os.lstat(path)
    fragment = {"folder": "is a folder, not a file", "socket": "is a socket",
                "block device": "is a block device", "symlink loop": "symbolic link loop"}
    with pytest.raises(ConfigError, match=fragment[kind]):
        with atomic_open(path, "w") as f:
            f.write("never")
    after = os.lstat(path)
    assert (stat.S_IFMT(after.st_mode), after.st_ino) == (stat.S_IFMT(before.st_mode),
                                                          before.st_ino)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


# -- the guard --------------------------------------------------------------------------


def test_guard_refuses_an_input_named_directly_or_through_links(tmp_path):
    image = tmp_path / "photos" / "a.jpg"
    image.parent.mkdir()
    image.write_bytes(b"jpeg")
    hard = tmp_path / "hard.jpg"
    os.link(image, hard)
    soft = tmp_path / "soft.jpg"
    soft.symlink_to(image)
    for path in (image, hard, soft):
        with pytest.raises(ConfigError, match="--csv .* is one of the command's inputs"):
            check_outputs({"--csv": path}, inputs=[image])
    check_outputs({"--csv": tmp_path / "new.csv"}, inputs=[image])  # a new file is no input
    assert image.read_bytes() == b"jpeg"


def test_guard_refuses_outputs_inside_scanned_folders(tmp_path):
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    linked = tmp_path / "linked"
    linked.symlink_to(photos / "sub")
    for files, folders in [({"--csv": photos / "x.csv"}, None),
                           ({"--csv": photos / "sub" / "new" / "x.csv"}, None),
                           ({"--csv": linked / "x.csv"}, None),
                           (None, {"--save-crops": photos / "crops"}),
                           (None, {"--out": photos})]:
        with pytest.raises(ConfigError, match=f"is inside the input folder {photos}"):
            check_outputs(files, folders, scanned=[photos])
    check_outputs({"--csv": tmp_path / "photos.csv"}, {"--out": tmp_path / "eval"},
                  scanned=[photos])  # beside the folder is fine
    assert not (photos / "crops").exists()


def test_guard_refuses_two_outputs_that_are_one_file(tmp_path):
    target = tmp_path / "o.json"
    link = tmp_path / "link.json"
    link.symlink_to(target)
    for other in (target, link, tmp_path / "." / "o.json"):
        with pytest.raises(ConfigError, match="--csv and --json are the same file"):
            check_outputs({"--csv": target, "--json": other})
    target.write_text("{}")
    with pytest.raises(ConfigError, match="--csv and --json are the same file"):
        check_outputs({"--csv": target, "--json": link})


def test_guard_kinds_of_file_and_folder_outputs(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    sock = make_socket(tmp_path / "sock")
    folder = tmp_path / "folder"
    (folder / "report.json").mkdir(parents=True)
    a_file = tmp_path / "a.txt"
    a_file.write_text("x")
    check_outputs({"--csv": fifo})  # written through
    cases = [
        (({"--csv": sock}, None), "--csv .*sock is a socket"),
        (({"--csv": folder}, None), "--csv .*folder is a folder, not a file"),
        (({"--csv": a_file / "x.csv"}, None), "a.txt is a file, not a folder"),
        ((None, {"--out": a_file}), "--out .*a.txt is a file, not a folder"),
        ((None, {"--out": fifo}), "--out .*fifo is a FIFO \\(named pipe\\), not a folder"),
        ((None, {"--out": sock}), "--out .*sock is a socket, not a folder"),
    ]
    for (files, folders), pattern in cases:
        with pytest.raises(ConfigError, match=pattern):
            check_outputs(files, folders)
    with pytest.raises(ConfigError, match="report.json is a folder, not a file"):
        check_outputs(folders={"--out": folder}, folder_files={"--out": ["report.json"]})
    os.mkfifo(tmp_path / "folder" / "confusion.csv")
    with pytest.raises(ConfigError, match="confusion.csv is a FIFO"):
        check_outputs(folders={"--out": folder}, folder_files={"--out": ["confusion.csv"]})
    broken = tmp_path / "broken"
    broken.symlink_to(tmp_path / "gone")
    with pytest.raises(ConfigError, match="broken symbolic link, not a folder"):
        check_outputs(folders={"--out": broken})
    check_outputs({"--csv": broken})  # a file output: its target is created
