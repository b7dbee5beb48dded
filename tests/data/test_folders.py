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
