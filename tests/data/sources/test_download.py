"""babyemo.data.sources: the documented entry points are the real functions."""

from __future__ import annotations

from babyemo import download as http_download
from babyemo.data import sources as download
from babyemo.data.sources import archives, fetch


def test_documented_names_are_reexported():
    assert download.download_url is http_download.download_url
    assert download.extract_archive is archives.extract_archive
    assert download.fetch_dataset is fetch.fetch_dataset
    assert download.fetch_url_dataset is fetch.fetch_url_dataset
    assert sorted(download.__all__) == ["download_url", "extract_archive", "fetch_dataset",
                                        "fetch_url_dataset"]
