"""Model cards written from a checkpoint."""

from __future__ import annotations

from babyemo.card import OUT_OF_SCOPE, model_card, write_model_card
from babyemo.checkpoint import load_checkpoint
from babyemo.evaluation import evaluate
from babyemo.runtime import Runtime


def test_card_reports_training_and_recorded_evaluations(checkpoint, prepared, tmp_path):
    from babyemo.data.preparation.manifest import read_manifest

    rows = read_manifest(prepared).rows
    meta = tmp_path / "meta.csv"
    meta.write_text("path,source\n" + "".join(
        f"{r.path},{'stock' if i % 2 else 'other'}\n" for i, r in enumerate(rows)))
    report = evaluate(
        checkpoint,
        data=prepared,
        split="test",
        bootstrap=100,
        slice_by="source",
        metadata=meta,
        record=True,
        runtime=Runtime(workers=0, precision="fp32"),
    )
    text, written = write_model_card(checkpoint, out=tmp_path / "card.md")
    assert written == tmp_path / "card.md" and written.read_text() == text
    for heading in (
        "## Model details",
        "## Intended use",
        "## Out-of-scope use",
        "## Training data",
        "### Known biases",
        "## Metrics",
    ):
        assert heading in text
    assert "not for clinical diagnosis" in text.lower() and OUT_OF_SCOPE in text
    assert "angry, crying, happy" in text  # class names in logit order
    m = report.metrics
    assert f"| macro-F1 | {m['macro_f1']:.3f} | {m['ci95']['macro_f1'][0]:.3f}" in text
    lo, hi = m["ci95"]["per_class"]["happy"]["f1"]
    assert f"| happy | {m['per_class']['happy']['precision']:.3f}" in text
    assert f"{lo:.3f}–{hi:.3f}" in text
    assert "Per `source` slice" in text and "| other |" in text and "| stock |" in text
    assert "Confusion matrix (rows = true class, columns = predicted)" in text
    floor = report.calibration["ece_if_calibrated"]
    assert (f"a perfectly calibrated model would show {floor['low']:.3f}-{floor['high']:.3f} "
            "on these images by chance.") in text


def test_card_text_and_no_evaluation(checkpoint):
    from babyemo.checkpoint import read_checkpoint_dict
    from babyemo.fs import atomic_open

    text = model_card(load_checkpoint(checkpoint), "tiny")
    assert text.startswith("# Model card: tiny") and "No evaluation is recorded" in text
    data = read_checkpoint_dict(checkpoint)
    data["card"] = {"intended_use": "Only a test.", "biases": "Synthetic colours only."}
    import torch

    with atomic_open(checkpoint, "wb") as f:
        torch.save(data, f)
    text = model_card(load_checkpoint(checkpoint))
    assert "Only a test." in text and "Synthetic colours only." in text


# --------------------------------------------------------------------------- init provenance

FER_FACTS = {
    "arch": "custom_resnet",
    "dataset": "fer2013",
    "n_train": 23618,
    "epoch": 11,
    "input_size": 64,
    "val_macro_f1": 0.49848254332462705,
    "tensors_loaded": 122,
    "tensors": 122,
    "head_classes": ["angry", "happy"],
}


def _with_init(checkpoint, init, config_init="auto"):
    """``checkpoint`` rewritten with ``train["init"] = init`` (and the config's ``init``)."""
    import torch

    from babyemo.checkpoint import read_checkpoint_dict
    from babyemo.fs import atomic_open

    data = read_checkpoint_dict(checkpoint)
    data["train"] = {
        **data["train"],
        "init": init,
        "config": {**data["train"]["config"], "init": config_init},
    }
    with atomic_open(checkpoint, "wb") as f:
        torch.save(data, f)
    return load_checkpoint(checkpoint)


def _packaged_or_skip(name="babyemo-fer2013"):
    import pytest

    from babyemo.models import store

    if name not in store.packaged_models():
        pytest.skip("no packaged model in this tree")
    return store.packaged_models()[name]["checkpoint"]


def test_card_names_the_recorded_init_model_never_its_path(checkpoint):
    ckpt = _with_init(
        checkpoint,
        {**FER_FACTS, "checkpoint": "/elsewhere/runs/x/best.pt", "name": "babyemo-fer2013"},
    )
    text = model_card(ckpt, "tiny")
    line = next(li for li in text.splitlines() if li.startswith("- Initialised from"))
    assert line.startswith("- Initialised from `babyemo-fer2013`")
    assert "chosen by `--init auto`" in line and "kept at epoch 11" in line
    assert "/elsewhere" not in text and "`auto`" not in text


def test_card_recognises_the_packaged_donor_by_its_recorded_facts(checkpoint):
    from babyemo.card import INIT_FACTS, checkpoint_facts

    packaged = checkpoint_facts(_packaged_or_skip())
    facts = {**FER_FACTS, **{k: packaged[k] for k in INIT_FACTS}}
    # an older babyemo recorded no hash: a path of the machine that trained it, and facts
    ckpt = _with_init(
        checkpoint,
        {**facts, "checkpoint": "/work/exp/fer-final.pt"},
        config_init="/work/exp/fer-final.pt",
    )
    text = model_card(ckpt, "tiny")
    line = next(li for li in text.splitlines() if li.startswith("- Initialised from"))
    assert line.startswith("- Initialised from `babyemo-fer2013`, a model packaged with babyemo")
    assert "recorded the donor as the file `fer-final.pt`, which is `babyemo-fer2013`" in line
    assert "/work/exp" not in text
    # a fact that differs: not recognised, only the file's name and its facts are shown
    ckpt = _with_init(
        checkpoint, {**facts, "epoch": facts["epoch"] + 1, "checkpoint": "/work/exp/fer-final.pt"}
    )
    line = next(li for li in model_card(ckpt).splitlines() if li.startswith("- Initialised from"))
    assert line.startswith(
        "- Initialised from the checkpoint file `fer-final.pt` (not a "
        "model registered here): a `custom_resnet` trained on `fer2013`"
    )
    assert "/work/exp" not in line and "babyemo-fer2013" not in line


def test_card_recognises_a_copy_of_a_packaged_file_by_its_recorded_sha256(checkpoint):
    from babyemo.fs import sha256_file

    path = _packaged_or_skip()
    ckpt = _with_init(
        checkpoint,
        {**FER_FACTS, "epoch": 99, "checkpoint": "/tmp/copy.pt", "sha256": sha256_file(path)},
    )
    line = next(li for li in model_card(ckpt).splitlines() if li.startswith("- Initialised from"))
    assert line.startswith("- Initialised from `babyemo-fer2013`")
    assert "the sha256 it recorded is that file's" in line
    ckpt = _with_init(
        checkpoint, {**FER_FACTS, "checkpoint": "/tmp/copy.pt", "sha256": "0" * 64}
    )  # a recorded hash outranks the facts
    assert "the checkpoint file `copy.pt`" in model_card(ckpt)


def test_card_recognises_a_rewritten_copy_of_a_packaged_file_by_its_weights(checkpoint):
    from babyemo.checkpoint import weights_sha256

    path = _packaged_or_skip()
    digest = weights_sha256(load_checkpoint(path).state_dict)
    # the donor file was rewritten (e.g. `evaluate --record`) after it was copied: its
    # sha256 is no packaged file's, the digest of its weights is
    ckpt = _with_init(checkpoint, {**FER_FACTS, "epoch": 99, "checkpoint": "/tmp/copy.pt",
                                   "sha256": "0" * 64, "weights_sha256": digest})
    line = next(li for li in model_card(ckpt).splitlines() if li.startswith("- Initialised from"))
    assert line.startswith("- Initialised from `babyemo-fer2013`, a model packaged with babyemo")
    assert "the digest of the weights it recorded is `babyemo-fer2013`'s" in line
    ckpt = _with_init(checkpoint, {**FER_FACTS, "checkpoint": "/tmp/copy.pt",
                                   "sha256": "0" * 64, "weights_sha256": "1" * 64})
    assert "the checkpoint file `copy.pt`" in model_card(ckpt)
    # trained from the run that later became the packaged file (as the build script does):
    # the run's local name was recorded; the weights say which packaged model it is
    ckpt = _with_init(checkpoint, {**FER_FACTS, "checkpoint": "/build/fer/best.pt",
                                   "name": "fer", "sha256": "0" * 64, "weights_sha256": digest})
    line = next(li for li in model_card(ckpt).splitlines() if li.startswith("- Initialised from"))
    assert line.startswith("- Initialised from `babyemo-fer2013`, a model packaged with babyemo")
    assert "`fer`" not in line and "/build" not in line
    # a local name with weights that are no packaged model's: the local name
    ckpt = _with_init(checkpoint, {**FER_FACTS, "checkpoint": "/build/fer/best.pt",
                                   "name": "fer", "sha256": "0" * 64, "weights_sha256": "1" * 64})
    line = next(li for li in model_card(ckpt).splitlines() if li.startswith("- Initialised from"))
    assert line.startswith("- Initialised from the trained model `fer`")


def test_packaged_card_names_its_donor_and_no_foreign_path():
    from babyemo.models import store

    path = _packaged_or_skip(store.PACKAGED_MODEL)
    text, _ = write_model_card(model=store.PACKAGED_MODEL)
    assert text.startswith(f"# Model card: {store.PACKAGED_MODEL}")
    assert "- Initialised from `babyemo-fer2013`, a model packaged with babyemo" in text
    assert "/work/" not in text and "initialised from `fer-final.pt`" not in text
    # the claim rests on the facts both files record
    infant = load_checkpoint(path).train["init"]
    fer = load_checkpoint(_packaged_or_skip())
    assert (
        infant["arch"],
        infant["dataset"],
        infant["n_train"],
        infant["epoch"],
        infant["input_size"],
        infant["val_macro_f1"],
    ) == (
        fer.arch,
        fer.train["dataset"],
        fer.train["n_train"],
        fer.train["epoch"],
        fer.input_spec.size,
        fer.metrics["val"]["macro_f1"],
    )


def test_card_without_evaluation_says_how_to_record_one(checkpoint):
    text = model_card(load_checkpoint(checkpoint), "main-job")
    assert "`babyemo evaluate --model main-job --split test --bootstrap 1000 --record`" in text
    text = model_card(load_checkpoint(checkpoint))  # no name: the file
    assert f"`babyemo evaluate --checkpoint {checkpoint} --split test" in text
    assert text.startswith("# Model card: run\n")  # runs/<run>/best.pt: the run's name


def test_card_recipe_line_says_where_training_started(checkpoint):
    recipe = [
        li
        for li in model_card(_with_init(checkpoint, None, config_init="none")).splitlines()
        if li.startswith("- Recipe:")
    ]
    assert len(recipe) == 1 and recipe[0].endswith(", trained from scratch.")
    assert recipe[0].startswith("- Recipe: 1 epoch, batch 8,")
    text = model_card(_with_init(checkpoint, None, config_init="auto"))
    assert "trained from scratch (`--init auto` found no packaged model" in text
    assert "Initialised from" not in text


def test_model_label_and_registered_name(checkpoint, tmp_path):
    import shutil

    from babyemo.models import store
    from babyemo.models.store import model_label, registered_name

    assert registered_name(checkpoint) == "run"  # train registers the run folder's name
    copy = tmp_path / "main-job" / "best.pt"
    copy.parent.mkdir()
    shutil.copy(checkpoint, copy)
    assert registered_name(copy) is None
    assert model_label(copy) == "main-job"  # <run>/best.pt: the run folder's name
    assert model_label(tmp_path / "weights" / "my-model.pt") == "my-model"
    store.register_trained("first-job", copy)
    assert registered_name(copy) == model_label(copy) == "first-job"


def test_checkpoint_facts_reads_scores_without_the_weights(checkpoint, prepared):
    import pytest

    from babyemo.card import checkpoint_facts
    from babyemo.errors import CheckpointError

    facts = checkpoint_facts(checkpoint)
    ckpt = load_checkpoint(checkpoint)
    assert facts["arch"] == ckpt.arch and facts["class_names"] == ckpt.class_names
    assert facts["val_macro_f1"] == ckpt.metrics["val"]["macro_f1"]
    assert facts["test_macro_f1"] is None and facts["input_size"] == 24
    report = evaluate(
        checkpoint,
        data=prepared,
        split="test",
        record=True,
        runtime=Runtime(workers=0, precision="fp32"),
    )
    facts = checkpoint_facts(checkpoint)
    assert facts["test_macro_f1"] == report.metrics["macro_f1"]
    assert facts["test_n"] == len(report.y_true)
    checkpoint.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        checkpoint_facts(checkpoint)
