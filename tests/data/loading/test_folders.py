"""babyemo.data.loading.folders: hidden names, visible sub-folders, the single wrapper folder."""

from __future__ import annotations

from babyemo.data.loading.folders import (
    is_hidden,
    is_nonempty_dir,
    single_top_folder,
    visible_subdirs,
)


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

    from babyemo.data.loading.folders import is_utf8, printable_name

    bad = os.fsdecode(b"b\xe9b\xe9.jpg")  # Latin-1 bytes on a UTF-8 file system
    assert is_utf8("bébé 😀.jpg") and not is_utf8(bad)
    assert printable_name(bad) == "b\\xe9b\\xe9.jpg" and printable_name("é") == "é"


def test_os_error_reasons_are_short_and_name_no_path():
    import errno

    from babyemo.data.loading.folders import os_error_reason

    assert os_error_reason(PermissionError(errno.EACCES, "x", "/a")) == "permission denied"
    assert "symbolic link loop" in os_error_reason(OSError(errno.ELOOP, "x", "/a"))
    assert "file not found" in os_error_reason(FileNotFoundError(errno.ENOENT, "x", "/a"))
    assert os_error_reason(OSError(errno.EROFS, "Read-only file system")) == \
        "Read-only file system"


def test_find_input_files_accounts_for_every_entry(tmp_path):
    import os

    import pytest

    from babyemo.data.loading.folders import find_input_files

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
    (root / "broken.txt").symlink_to("nowhere.txt")  # not named like an image: skipped
    found = find_input_files([root])
    names = [p.relative_to(root).as_posix() for p in found.files]
    assert names == ["a.jpg", "linked/c.png", "sub/b.png"]
    assert found.hidden == 2
    assert [p.name for p in found.non_images] == ["broken.txt", "notes.txt"]
    reasons = {p.name: (code.value, r) for p, code, r in found.skipped}
    assert reasons == {
        "broken.jpg": ("broken_link", "broken symbolic link (its target does not exist)"),
        "loop.jpg": ("link_loop", "symbolic link loop (too many levels of symbolic links)"),
        "pipe.png": ("not_a_file", "not a regular file (a pipe, socket or device)"),
        "up": ("link_loop", "link to a folder already searched (symlink loop?)"),
    }
    flat = find_input_files([root], recursive=False)
    assert [p.name for p in flat.files] == ["a.jpg"]
    every = find_input_files([root], all_files=True)  # --all-files: every name is tried
    assert [p.name for p in every.files] == ["a.jpg", "notes.txt", "c.png", "b.png"]
    assert every.non_images == [] and {p.name for p, _, _ in every.skipped} == {
        "broken.jpg", "broken.txt", "loop.jpg", "pipe.png", "up"}
    assert find_input_files([root / ".DS_Store"]).files == [root / ".DS_Store"]  # named: kept
    assert find_input_files([root / "notes.txt"]).files == [root / "notes.txt"]  # named: kept
    with pytest.raises(FileNotFoundError):
        find_input_files([tmp_path / "missing"])


def test_find_input_files_reports_a_folder_it_cannot_list(tmp_path, monkeypatch):
    import os

    from babyemo.data.loading.folders import find_input_files

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
    assert found.files == [] and found.skipped == [
        (locked, "unreadable", "cannot list folder (permission denied)")]


def test_image_suffixes_are_defined_once_and_know_heic_and_avif():
    from babyemo.data.loading import images
    from babyemo.data.loading.folders import IMAGE_SUFFIXES, is_image_name
    from babyemo.data.preparation import scan

    assert images.IMAGE_SUFFIXES is IMAGE_SUFFIXES and scan.IMAGE_SUFFIXES is IMAGE_SUFFIXES
    for name in ("a.JPG", "b.jpeg", "c.png", "d.webp", "IMG_1.HEIC", "e.avif", "f.tiff"):
        assert is_image_name(name), name
    for name in ("readme.txt", "list.csv", "photo", ".jpg.bak", "movie.mp4"):
        assert not is_image_name(name), name


def test_collect_input_files_explains_what_it_skipped(tmp_path):
    import pytest

    from babyemo.data.loading.folders import collect_input_files
    from babyemo.errors import DataError

    with pytest.raises(DataError, match="No such file or folder: .*missing"):
        collect_input_files([tmp_path / "missing"])
    only_text = tmp_path / "notes"
    only_text.mkdir()
    (only_text / "readme.txt").write_text("x")
    (only_text / ".DS_Store").write_bytes(b"x")
    with pytest.raises(DataError, match=r"\(1 non-image file and 1 hidden entry skipped\)") \
            as err:
        collect_input_files([only_text])
    assert "--all-files" in err.value.hint
    assert [p.name for p in collect_input_files([only_text], all_files=True).files] == [
        "readme.txt"]


def test_output_paths_are_checked_before_any_work(tmp_path):
    import os

    import pytest

    from babyemo.data.loading.folders import (
        check_output_file,
        check_output_files,
        check_output_folder,
    )
    from babyemo.errors import ConfigError

    assert check_output_file(tmp_path / "new" / "deeper" / "out.csv") == \
        tmp_path / "new" / "deeper" / "out.csv"  # missing folders are created later
    with pytest.raises(ConfigError, match="--csv .* is a folder, not a file"):
        check_output_file(tmp_path, "--csv")
    a_file = tmp_path / "a.txt"
    a_file.write_text("x")
    with pytest.raises(ConfigError, match="a.txt is a file, not a folder"):
        check_output_file(a_file / "out.csv", "--csv")
    with pytest.raises(ConfigError, match="--save-crops .* is a file, not a folder"):
        check_output_folder(a_file, "--save-crops")
    assert check_output_folder(tmp_path / "crops") == tmp_path / "crops"
    with pytest.raises(ConfigError, match="--csv and --json are the same file"):
        check_output_files({"--csv": tmp_path / "o", "--json": str(tmp_path / "o")})
    assert check_output_files({"--csv": None, "--json": tmp_path / "o.json"}) == [
        tmp_path / "o.json"]
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(ConfigError, match="permission denied in"):
            check_output_file(locked / "out.csv", "--csv")
