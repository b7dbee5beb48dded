"""babyemo.data.folders: hidden names, visible sub-folders, the single wrapper folder."""

from __future__ import annotations

from babyemo.data.folders import is_hidden, is_nonempty_dir, single_top_folder, visible_subdirs


def test_hidden_names_and_single_top_folder(tmp_path):
    assert is_hidden(".DS_Store") and is_hidden("__MACOSX") and not is_hidden("happy")
    wrapped = tmp_path / "wrapped"
    (wrapped / "inner" / "a").mkdir(parents=True)
    (wrapped / "__MACOSX").mkdir()
    (wrapped / ".babyemo-source.json").write_text("{}")
    assert visible_subdirs(wrapped) == [wrapped / "inner"]
    assert single_top_folder(wrapped) == wrapped / "inner"  # hidden entries do not count
    (wrapped / "README.txt").write_text("x")
    assert single_top_folder(wrapped) == wrapped
    assert is_nonempty_dir(wrapped) and not is_nonempty_dir(wrapped / "inner" / "a")
    assert not is_nonempty_dir(tmp_path / "missing")


def test_utf8_checks_and_printable_names():
    import os

    from babyemo.data.folders import is_utf8, printable_name

    bad = os.fsdecode(b"b\xe9b\xe9.jpg")  # Latin-1 bytes on a UTF-8 file system
    assert is_utf8("bébé 😀.jpg") and not is_utf8(bad)
    assert printable_name(bad) == "b\\xe9b\\xe9.jpg" and printable_name("é") == "é"


def test_os_error_reasons_are_short_and_name_no_path():
    import errno

    from babyemo.data.folders import os_error_reason

    assert os_error_reason(PermissionError(errno.EACCES, "x", "/a")) == "permission denied"
    assert "symbolic link loop" in os_error_reason(OSError(errno.ELOOP, "x", "/a"))
    assert "file not found" in os_error_reason(FileNotFoundError(errno.ENOENT, "x", "/a"))
    assert os_error_reason(OSError(errno.EROFS, "Read-only file system")) == \
        "Read-only file system"


def test_find_input_files_accounts_for_every_entry(tmp_path):
    import os

    import pytest

    from babyemo.data.folders import find_input_files

    root = tmp_path / "in"
    (root / "sub").mkdir(parents=True)
    (root / "a.jpg").write_bytes(b"x")
    (root / "notes.txt").write_text("x")
    (root / "sub" / "b.png").write_bytes(b"x")
    (root / ".DS_Store").write_bytes(b"x")
    (root / ".cache").mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "c.png").write_bytes(b"x")
    (root / "linked").symlink_to(elsewhere, target_is_directory=True)  # followed
    (root / "sub" / "up").symlink_to(root, target_is_directory=True)   # a folder loop
    (root / "loop.jpg").symlink_to("loop.jpg")
    (root / "broken.jpg").symlink_to("nowhere.jpg")
    os.mkfifo(root / "pipe.png")
    found = find_input_files([root])
    names = [p.relative_to(root).as_posix() for p in found.files]
    assert names == ["a.jpg", "notes.txt", "linked/c.png", "sub/b.png"]
    assert found.hidden == 2
    reasons = {p.name: r for p, r in found.skipped}
    assert reasons == {
        "broken.jpg": "broken symbolic link (its target does not exist)",
        "loop.jpg": "symbolic link loop (too many levels of symbolic links)",
        "pipe.png": "not a regular file (a pipe, socket or device)",
        "up": "link to a folder already searched (symlink loop?)",
    }
    flat = find_input_files([root], recursive=False)
    assert [p.name for p in flat.files] == ["a.jpg", "notes.txt"]
    assert find_input_files([root / ".DS_Store"]).files == [root / ".DS_Store"]  # named: kept
    with pytest.raises(FileNotFoundError):
        find_input_files([tmp_path / "missing"])


def test_find_input_files_reports_a_folder_it_cannot_list(tmp_path, monkeypatch):
    import os

    from babyemo.data.folders import find_input_files

    locked = tmp_path / "in" / "locked"
    locked.mkdir(parents=True)
    (locked / "a.jpg").write_bytes(b"x")
    real_scandir = os.scandir

    def scandir(path):
        if os.fspath(path) == str(locked):
            raise PermissionError(13, "Permission denied", str(locked))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    found = find_input_files([tmp_path / "in"])
    assert found.files == [] and found.skipped == [(locked, "cannot list folder (permission "
                                                            "denied)")]
