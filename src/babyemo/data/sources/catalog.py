"""The catalogue of known datasets (stdlib only).

Each :class:`DatasetEntry` records where a dataset comes from, how to fetch it, its class
names, its terms of use, how to cite it and what is documented about who is in it. The
fetching itself is done by :mod:`babyemo.data.sources`.

Notes on checksums: GitHub ``/archive/<commit>.zip`` files are generated on the fly and are
not guaranteed byte-stable (compression settings change over time), so the GitHub entries
carry ``sha256=None``; the pinned commit id in the URL is what fixes their content. Every
archive URL is ``https`` (checked before downloading) and every download has a size limit
(:attr:`DatasetEntry.max_bytes`); an entry with a ``sha256`` is verified before use.
"""

from __future__ import annotations

from dataclasses import dataclass

from babyemo.errors import unknown_name

DEFAULT_ENTRY_MAX_BYTES = 2 * 2**30
"""Download size limit of a catalogue archive (2 GiB): the images of the catalogue's GitHub
archives take tens of megabytes (about 70 MB for the 1,200 infant images, 60 MB for
FER-2013's 35,887), so anything near this limit is not the dataset."""

KINDS = ("github-archive", "kaggle", "gdrive")
"""How a dataset is fetched: a zip of a GitHub commit, a Kaggle dataset (kagglehub) or a
Google Drive folder (gdown)."""


@dataclass(frozen=True)
class DatasetEntry:
    """One known dataset.

    Attributes:
        name: Catalogue name used on the command line, e.g. ``"infant-emotions"``.
        title: Human-readable title.
        classes: Class names in label-index order; empty when the classes are read from the
            dataset's folders after download.
        kind: One of :data:`KINDS`.
        url: Archive URL (``https`` only) for ``"github-archive"``, else ``None``.
        sha256: Expected SHA-256 of the archive, or ``None`` when the archive is not
            byte-stable (see module notes).
        kaggle_handle: ``owner/dataset`` on Kaggle (primary source for ``"kaggle"``, an
            optional alternative otherwise), or ``None``.
        gdrive_folder: Google Drive folder id for ``"gdrive"``, else ``None``.
        extra: The ``babyemo[extra]`` needed to fetch it, or ``None`` (stdlib download).
        terms: Licence / terms of use as documented by the source.
        citation: How to cite the dataset.
        demographics: What is documented about the people in the images.
        description: Content and layout.
        size_note: Size in words, e.g. ``"1,200 images"``.
        max_bytes: Largest archive download accepted, in bytes (a bigger or longer
            download is refused and deleted); default :data:`DEFAULT_ENTRY_MAX_BYTES`.
    """

    name: str
    title: str
    classes: tuple[str, ...]
    kind: str
    url: str | None
    sha256: str | None
    kaggle_handle: str | None
    gdrive_folder: str | None
    extra: str | None
    terms: str
    citation: str
    demographics: str
    description: str
    size_note: str
    max_bytes: int = DEFAULT_ENTRY_MAX_BYTES


_INFANT_COMMIT = "c50836c43f3c3403a0b62a13e544b31acbd40a24"
_FER_COMMIT = "9d0b7b81c7335d20576326daa70d1a7cc7b0c42f"

_ENTRIES = (
    DatasetEntry(
        name="infant-emotions",
        title="Infant emotions (InfantEmotionGen baby_emotion_samples)",
        classes=("angry", "crying", "happy"),
        kind="github-archive",
        url=("https://github.com/JessicaHenson01/InfantEmotionGen/archive/"
             f"{_INFANT_COMMIT}.zip"),
        sha256=None,
        kaggle_handle=None,
        gdrive_folder=None,
        extra=None,
        terms=("No licence is stated by the source repository. Many file names come from "
               "stock-photo sites. Treat as research/testing use only."),
        citation=("JessicaHenson01/InfantEmotionGen on GitHub, folder "
                  f"data/baby_emotion_samples/ at commit {_INFANT_COMMIT}; the images come "
                  "from a Roboflow export named \"Smart Baby Monitoring System\"."),
        demographics=("Not recorded per image. By eye mostly light-skinned children; ages "
                      "from newborn to about 6 years (not only infants). About 45% of the "
                      "file names come from stock-photo sites, unevenly per class (angry and "
                      "crying far more than happy), so a model can learn photo style or "
                      "watermarks instead of expressions."),
        description=("Face-centred photos of infants and toddlers, 3 classes. In the "
                     "archive the images are in data/baby_emotion_samples/ and the labels "
                     "in data/baby_emotion_samples.json as {\"labels\": [[file, index], ...]} "
                     "with 0=angry, 1=crying, 2=happy; babyemo rearranges them into one "
                     "folder per class. The GitHub archive has no fixed checksum (not "
                     "byte-stable); the commit id pins its content."),
        size_note="1,200 images (400 per class)",
    ),
    DatasetEntry(
        name="fer2013",
        title="FER-2013 (ICML 2013 facial expression recognition challenge)",
        classes=("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"),
        kind="github-archive",
        url=f"https://github.com/darkbit404/FaceExp/archive/{_FER_COMMIT}.zip",
        sha256=None,
        kaggle_handle="msambare/fer2013",
        gdrive_folder=None,
        extra=None,
        terms="Research use (data of the ICML 2013 representation-learning challenge).",
        citation=("Goodfellow, I. J., et al. (2013). Challenges in Representation Learning: "
                  "A report on three machine learning contests. ICML 2013 Workshop on "
                  "Challenges in Representation Learning. Images collected by Pierre-Luc "
                  "Carrier and Aaron Courville. Copy fetched from GitHub "
                  f"darkbit404/FaceExp at commit {_FER_COMMIT} (alternative: Kaggle "
                  "msambare/fer2013)."),
        demographics=("Adult faces from the web, gathered by Google image search; no "
                      "per-image demographics are recorded. Known defects: byte-identical "
                      "duplicates, some across train and test; some duplicates with "
                      "conflicting labels; a few near-blank images."),
        description=("48x48 grayscale face crops, 7 classes, imbalanced (disgust is rare). "
                     "Layout train/<class>/ and test/<class>/ (taken from data/ of the "
                     "archive). The GitHub archive has no fixed checksum (not byte-stable); "
                     "the commit id pins its content. If the GitHub download fails and "
                     "kagglehub is installed, the Kaggle copy is used instead."),
        size_note="35,887 images (28,709 train, 7,178 test)",
    ),
    DatasetEntry(
        name="baby-emotion-kaggle",
        title="Baby emotion classification (Kaggle)",
        classes=(),
        kind="kaggle",
        url=None,
        sha256=None,
        kaggle_handle="sudarshanvaidya/baby-emotion-classification",
        gdrive_folder=None,
        extra="kaggle",
        terms=("As stated on the dataset's Kaggle page; downloading needs a Kaggle account "
               "and acceptance of Kaggle's terms."),
        citation=("Kaggle dataset sudarshanvaidya/baby-emotion-classification "
                  "(https://www.kaggle.com/datasets/sudarshanvaidya/"
                  "baby-emotion-classification)."),
        demographics="Not documented by the source.",
        description=("Baby face images in 5 classes with train/ and validation/ folders. "
                     "The class names are read from the folders after download. Fetched "
                     "with kagglehub using your Kaggle credentials."),
        size_note="5 classes; size as listed on Kaggle",
    ),
    DatasetEntry(
        name="babyface",
        title="BabyFace infant facial expressions",
        classes=("happy", "sad", "neutral"),
        kind="gdrive",
        url=None,
        sha256=None,
        kaggle_handle=None,
        gdrive_folder="1hOa0vpw69RvMer_AtGLDZtspyfLAhYiS",
        extra="gdrive",
        terms="As stated by its authors in the Google Drive folder; research use.",
        citation=("The BabyFace set, Google Drive folder 1hOa0vpw69RvMer_AtGLDZtspyfLAhYiS; "
                  "cite the authors' publication as they request in that folder."),
        demographics="Documented by its authors: about 70% of the infants are White.",
        description=("Infant face images in 3 classes (happy, sad, neutral), fetched from "
                     "Google Drive with gdown."),
        size_note="1,814 images",
    ),
)

CATALOG: dict[str, DatasetEntry] = {entry.name: entry for entry in _ENTRIES}
"""All known datasets by name."""


def list_datasets() -> list[DatasetEntry]:
    """All catalogue entries, in catalogue order (the main infant set first)."""
    return list(CATALOG.values())


def catalogue_notes(name: str) -> dict[str, str] | None:
    """Title, terms, citation, demographics, description and size note of catalogue
    dataset ``name`` (``None`` when it is not in the catalogue)."""
    entry = CATALOG.get(name)
    if entry is None:
        return None
    return {key: str(getattr(entry, key, "") or "") for key in
            ("title", "terms", "citation", "demographics", "description", "size_note")}


def get_dataset(name: str) -> DatasetEntry:
    """The catalogue entry called ``name``.

    Raises:
        RegistryError: Unknown name; the hint suggests close matches.
    """
    try:
        return CATALOG[name]
    except KeyError:
        raise unknown_name("dataset", name, CATALOG) from None
