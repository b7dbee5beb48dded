"""A model is named by its name, never by a path that means nothing to the reader: the
init a training run records, the titles of evaluation plots, the best epoch of curves."""

from __future__ import annotations

import shutil

from babyemo import reports
from babyemo.card import model_card
from babyemo.checkpoint import load_checkpoint, record_evaluation, weights_sha256
from babyemo.config import TrainConfig
from babyemo.fs import sha256_file
from babyemo.models import store
from babyemo.runtime import Runtime
from babyemo.training import train


def _config(prepared, tiny_arch, out, **kw):
    return TrainConfig(**{**dict(data=str(prepared), arch=tiny_arch, image_size=None,
                                 epochs=1, batch_size=8, precision="fp32", out=str(out),
                                 seed=1, init="none"), **kw})


def _init_line(text: str) -> str:
    return next(li for li in text.splitlines() if li.startswith("- Initialised from"))


def test_training_records_the_init_model_name_and_hash(prepared, tiny_arch, tmp_path,
                                                       monkeypatch):
    donor = train(_config(prepared, tiny_arch, tmp_path / "donor", name="donor-a"))
    by_name = train(_config(prepared, tiny_arch, tmp_path / "b", init="donor-a"))
    init = load_checkpoint(by_name.best_checkpoint).train["init"]
    assert init["name"] == "donor-a"
    assert init["sha256"] == sha256_file(donor.best_checkpoint)
    # --init auto: the packaged model, by its name (packaged here: the donor's file)
    packaged = tmp_path / "weights" / f"{store.PACKAGED_INIT}.pt"
    packaged.parent.mkdir()
    shutil.copy(donor.best_checkpoint, packaged)
    monkeypatch.setattr(store, "packaged_models", lambda: {
        store.PACKAGED_INIT: {"checkpoint": str(packaged), "packaged": True,
                                    "created": ""}})
    auto = train(_config(prepared, tiny_arch, tmp_path / "c", init="auto"))
    ckpt = load_checkpoint(auto.best_checkpoint)
    assert ckpt.train["init"]["name"] == store.PACKAGED_INIT
    line = _init_line(model_card(ckpt))
    assert line.startswith(f"- Initialised from `{store.PACKAGED_INIT}`, a model "
                           "packaged with babyemo")
    assert "chosen by `--init auto`" in line and str(tmp_path) not in line
    # an unregistered copy of the packaged file: recognised by its content
    copy = tmp_path / "elsewhere" / "fer-final.pt"
    copy.parent.mkdir()
    shutil.copy(packaged, copy)
    tuned = train(_config(prepared, tiny_arch, tmp_path / "d", init=str(copy)))
    assert load_checkpoint(tuned.best_checkpoint).train["init"]["name"] == \
        store.PACKAGED_INIT
    # the copy rewritten since (an evaluation recorded in it): other file bytes, same
    # weights, still the packaged model
    record_evaluation(copy, {"key": "fer2013/test", "metrics": {"accuracy": 0.5}})
    assert sha256_file(copy) != sha256_file(packaged)
    rewritten = train(_config(prepared, tiny_arch, tmp_path / "d2", init=str(copy)))
    init = load_checkpoint(rewritten.best_checkpoint).train["init"]
    assert init["name"] == store.PACKAGED_INIT and init["sha256"] == sha256_file(copy)
    assert init["weights_sha256"] == weights_sha256(load_checkpoint(packaged).state_dict)
    # a file that is no model's: no name; the card shows the file's name, not its folder
    other = tmp_path / "elsewhere" / "mine.pt"
    shutil.copy(by_name.best_checkpoint, other)
    last = train(_config(prepared, tiny_arch, tmp_path / "e", init=str(other)))
    ckpt = load_checkpoint(last.best_checkpoint)
    assert ckpt.train["init"]["name"] is None
    line = _init_line(model_card(ckpt))
    assert line.startswith("- Initialised from the checkpoint file `mine.pt` (not a model "
                           "registered here)")
    assert "elsewhere" not in line


def test_eval_plot_titles_name_the_model_and_n(checkpoint, prepared, tmp_path, monkeypatch):
    from babyemo.evaluation import evaluate

    titles = {}
    for fn in ("plot_confusion", "plot_reliability"):
        real = getattr(reports, fn)

        def spy(*args, _fn=fn, _real=real, **kw):
            titles[_fn] = kw["title"]
            return _real(*args, **kw)

        monkeypatch.setattr(reports, fn, spy)
    report = evaluate(checkpoint, data=prepared, split="test", out=tmp_path / "ev",
                      runtime=Runtime(workers=0, precision="fp32"))
    n = len(report.y_true)
    # the fixture's run folder is registered as "run"
    assert titles == {"plot_confusion": f"run on test (n={n})",
                      "plot_reliability": f"run on test (n={n})"}
    copy = tmp_path / "main-job" / "best.pt"
    copy.parent.mkdir()
    shutil.copy(checkpoint, copy)  # not registered: the run folder's name
    evaluate(copy, data=prepared, split="val", out=tmp_path / "ev2",
             runtime=Runtime(workers=0, precision="fp32"))
    assert titles["plot_confusion"].startswith("main-job on val (n=")
    store.register_trained("renamed", copy)
    evaluate(copy, data=prepared, split="val", out=tmp_path / "ev3",
             runtime=Runtime(workers=0, precision="fp32"))
    assert titles["plot_reliability"].startswith("renamed on val (n=")


def test_curves_mark_the_epoch_train_keeps(tmp_path, monkeypatch):
    from babyemo.training.history import write_history

    seen = []
    monkeypatch.setattr(reports, "plot_curves",
                        lambda history, path, best_epoch=None: seen.append(best_epoch))
    rows = [{"epoch": 1, "train_loss": 1.0, "val_loss": 0.9, "val_macro_f1": 0.5},
            {"epoch": 2, "train_loss": 0.8, "val_loss": 0.7, "val_macro_f1": 0.6},
            {"epoch": 3, "train_loss": 0.7, "val_loss": 0.6, "val_macro_f1": 0.6},
            {"epoch": 4, "train_loss": 0.6, "val_loss": 0.8, "val_macro_f1": 0.6}]
    write_history(tmp_path, rows, [])
    assert seen == [3]  # best macro-F1 (0.6), the tie going to the lower val loss
    write_history(tmp_path, [{"epoch": e, "train_loss": 1.0 / e} for e in (1, 2, 3)], [])
    assert seen[-1] == 3  # without validation, best.pt is the last epoch


def test_real_training_curves_have_the_best_epoch_marker(prepared, tiny_arch, tmp_path,
                                                         monkeypatch):
    seen = []
    real = reports.curves_figure

    def spy(history, best_epoch=None):
        fig = real(history, best_epoch)
        seen.append((best_epoch, [ax.get_ylabel() for ax in fig.axes]))
        return fig

    monkeypatch.setattr(reports, "curves_figure", spy)
    result = train(_config(prepared, tiny_arch, tmp_path / "r", epochs=2))
    assert seen[-1][0] == result.best_epoch
    assert all(seen[-1][1])  # every panel has a y label
