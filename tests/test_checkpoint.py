import pickle

import pytest
import torch

from babyemo.checkpoint import FORMAT, load_checkpoint, read_checkpoint_dict, save_checkpoint
from babyemo.config import InputSpec
from babyemo.errors import CheckpointError
from babyemo.models.registry import create_model


def _save(tmp_path, tiny_arch, **over):
    model = create_model(tiny_arch, num_classes=3)
    path = save_checkpoint(tmp_path / "m.pt", model=model, arch=tiny_arch, arch_kwargs={},
                           class_names=["angry", "crying", "happy"],
                           input_spec=InputSpec(size=24, mean=(0.5,) * 3, std=(0.5,) * 3),
                           train={"seed": 0}, metrics={"val": {"macro_f1": 0.5}})
    return model, path


def test_round_trip_rebuilds_identical_model(tmp_path, tiny_arch):
    model, path = _save(tmp_path, tiny_arch)
    raw = torch.load(path, weights_only=True)  # plain data only
    assert raw["format"] == FORMAT and raw["class_names"] == ["angry", "crying", "happy"]
    ckpt = load_checkpoint(path)
    rebuilt = ckpt.build_model("cpu")
    x = torch.randn(2, 3, 24, 24)
    model.eval()
    assert torch.equal(model(x), rebuilt(x))
    assert ckpt.input_spec.size == 24 and ckpt.metrics["val"]["macro_f1"] == 0.5


def test_pickled_object_is_refused_and_not_executed(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            import os
            return (os.system, (f"touch {marker}",))

    bad = tmp_path / "evil.pt"
    with open(bad, "wb") as f:
        pickle.dump({"format": FORMAT, "payload": Evil()}, f)
    with pytest.raises(CheckpointError, match="refused|not a readable"):
        read_checkpoint_dict(bad)
    assert not marker.exists()


def test_missing_keys_and_versions(tmp_path, tiny_arch):
    _, path = _save(tmp_path, tiny_arch)
    data = torch.load(path, weights_only=True)
    for mutate, pattern in [(lambda d: d.pop("class_names"), "lacks key"),
                            (lambda d: d.__setitem__("format_version", 99), "format_version 99"),
                            (lambda d: d.__setitem__("format", "other"), "not a babyemo")]:
        d = dict(data)
        mutate(d)
        torch.save(d, tmp_path / "x.pt")
        with pytest.raises(CheckpointError, match=pattern):
            load_checkpoint(tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "trunc.pt").write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "trunc.pt")


def test_weights_of_other_arch_give_checkpoint_error(tmp_path, tiny_arch):
    _, path = _save(tmp_path, tiny_arch)
    data = torch.load(path, weights_only=True)
    data["arch_kwargs"] = {"width": 4}
    torch.save(data, tmp_path / "y.pt")
    with pytest.raises(CheckpointError, match="do not match"):
        load_checkpoint(tmp_path / "y.pt").build_model()


def test_corrupt_checkpoints_give_checkpoint_error(tmp_path, tiny_arch):
    """Truncated or bit-flipped files: a CheckpointError (or a loadable dict when only
    tensor bytes changed), never another exception type (hypothesis)."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    _, path = _save(tmp_path, tiny_arch)
    good = path.read_bytes()
    target = tmp_path / "fuzz.pt"

    @settings(max_examples=150, deadline=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(cut=st.integers(0, len(good)), flips=st.lists(
        st.tuples(st.integers(0, len(good) - 1), st.integers(0, 255)), max_size=6),
        junk=st.binary(max_size=32))
    def check(cut, flips, junk):
        data = bytearray(good)
        for at, value in flips:
            data[at] = value
        data = bytes(data[:cut]) + junk if flips or junk else bytes(data[:cut])
        target.write_bytes(data)
        try:
            raw = read_checkpoint_dict(target)
        except CheckpointError as e:
            assert str(target) in e.message
        else:
            assert raw["format"] == FORMAT

    check()


def test_refusal_message_names_what_was_refused_without_unsafe_advice(tmp_path):
    import builtins

    class Evil:
        def __reduce__(self):
            return (builtins.eval, ("1",))

    torch.save({"format": FORMAT, "x": Evil()}, tmp_path / "e.pt")
    with pytest.raises(CheckpointError) as info:
        read_checkpoint_dict(tmp_path / "e.pt")
    assert "refused to load" in info.value.message and "eval" in info.value.message
    assert "weights_only=False" not in str(info.value) and "\x1b" not in str(info.value)


@pytest.mark.parametrize("opcode", [b"s", b".", b"h", b"("])
def test_torn_pickle_stream_gives_checkpoint_error(tmp_path, tiny_arch, opcode):
    """torch's weights-only unpickler raises IndexError / KeyError on some corrupt
    streams (found by the fuzz test above); they are CheckpointErrors too."""
    _, path = _save(tmp_path, tiny_arch)
    data = bytearray(path.read_bytes())
    start = data.find(b"\x80\x02")  # the pickle protocol header of data.pkl (stored as is)
    data[start + 2] = opcode[0]
    (tmp_path / "torn.pt").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        read_checkpoint_dict(tmp_path / "torn.pt")


def _tampered(src, dst, change):
    data = torch.load(src, weights_only=True)
    change(data)
    torch.save(data, dst)
    return dst


@pytest.mark.parametrize("case", ["nan", "inf", "size", "duplicate", "one_class", "empty"])
def test_every_command_refuses_a_checkpoint_that_cannot_be_right(case, tiny_arch, tmp_path):
    """Issue 13: NaN weights labelled every image with the first class, confidence nan."""
    from babyemo.cli import app
    from tests.conftest import make_checkpoint, make_image

    good = make_checkpoint(tmp_path / "good.pt", tiny_arch)

    def change(d):
        first = next(k for k, v in d["state_dict"].items() if v.is_floating_point())
        if case in ("nan", "inf"):
            d["state_dict"][first].view(-1)[0] = float(case)
        elif case == "size":
            d["input"]["size"] = 100_000
        elif case == "duplicate":
            d["class_names"] = ["angry", "angry", "happy"]
        elif case == "one_class":
            d["class_names"] = ["angry"]
        else:
            d["class_names"] = ["angry", " ", "happy"]

    bad = _tampered(good, tmp_path / "bad.pt", change)
    message = {"nan": "NaN or infinite", "inf": "NaN or infinite", "size": "over the 2048 px",
               "duplicate": "appear more than once", "one_class": "two or more",
               "empty": "two or more"}[case]
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(bad)
    make_image(tmp_path / "photos" / "a.png")
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, ["predict", str(tmp_path / "photos"), "--checkpoint",
                                      str(bad), "--json", str(tmp_path / "p.json")])
    assert result.exit_code == 1 and message in result.stderr
    assert not (tmp_path / "p.json").exists()
