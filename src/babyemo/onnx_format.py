"""The ``.onnx`` file format of babyemo's exports, beside :mod:`babyemo.checkpoint`.

An exported model (:func:`babyemo.export.export_onnx`) is an ONNX file whose
``metadata_props`` carry the checkpoint's class names, input spec, architecture, face-crop
settings and a digest of its weights (:class:`OnnxMetadata`), so that the onnxruntime
engine (:class:`babyemo.engines.OnnxEngine`) rebuilds its preprocessing from the file and
refuses a file that does not match its checkpoint (:func:`check_matches`). Its default
names sit beside the checkpoint (:func:`onnx_paths`, :func:`find_onnx`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from babyemo.checkpoint import Checkpoint, weights_sha256
from babyemo.config import InputSpec
from babyemo.errors import ExportError

ONNX_FORMAT = "babyemo-onnx"
"""``babyemo_format`` metadata value of an exported ONNX file."""

ONNX_FORMAT_VERSION = 1
"""``babyemo_format_version`` metadata value this babyemo writes and reads."""


@dataclass(frozen=True)
class OnnxMetadata:
    """The babyemo entries of an exported ONNX file's ``metadata_props`` (all strings there;
    JSON for the structured ones).

    Attributes:
        class_names: Class names in logit order.
        input_spec: Preprocessing (size, channels, mean, std) of the input.
        arch: Registry architecture name.
        arch_kwargs: Its builder's extra keyword arguments.
        faces: The checkpoint's face-crop settings (``None``: whole images).
        source_checkpoint: File name of the checkpoint it was exported from.
        source_checkpoint_sha256: SHA-256 of that file's bytes at export time.
        weights_sha256: :func:`babyemo.checkpoint.weights_sha256` of the checkpoint's
            weights (checked at load: a checkpoint whose file changed but whose weights
            did not, e.g. after ``babyemo calibrate``, still matches).
        int8: Whether the model is statically quantized to int8.
        extra: Other entries (``int8_calibration``, ``int8_eval``, ``export_check``,
            ``exporter``, ``babyemo_version``), JSON-decoded where possible.
    """

    class_names: list[str]
    input_spec: InputSpec
    arch: str
    arch_kwargs: dict[str, Any]
    faces: dict[str, Any] | None
    source_checkpoint: str
    source_checkpoint_sha256: str
    weights_sha256: str
    int8: bool
    extra: dict[str, Any] = field(default_factory=dict)

    def to_props(self) -> dict[str, str]:
        """The ``metadata_props`` key/value strings."""
        from babyemo import __version__

        props = {"babyemo_format": ONNX_FORMAT, "babyemo_format_version": str(ONNX_FORMAT_VERSION),
                 "babyemo_version": __version__,
                 "class_names": json.dumps(self.class_names),
                 "input": json.dumps(self.input_spec.to_dict()), "arch": self.arch,
                 "arch_kwargs": json.dumps(self.arch_kwargs), "faces": json.dumps(self.faces),
                 "source_checkpoint": self.source_checkpoint,
                 "source_checkpoint_sha256": self.source_checkpoint_sha256,
                 "weights_sha256": self.weights_sha256, "int8": json.dumps(self.int8)}
        for key, value in self.extra.items():
            props.setdefault(key, value if isinstance(value, str) else json.dumps(value))
        return props

    @classmethod
    def from_props(cls, props: dict[str, str], where: str | os.PathLike[str]) -> OnnxMetadata:
        """Parse ``metadata_props``.

        Raises:
            ExportError: Not a babyemo ONNX file, an unknown format version, or a missing
                or malformed entry.
        """
        if props.get("babyemo_format") != ONNX_FORMAT:
            raise ExportError(f"{where}: not an ONNX file exported by babyemo (no babyemo "
                              "metadata).", "export it with `babyemo export CHECKPOINT "
                              "--format onnx`")
        version = props.get("babyemo_format_version")
        if version != str(ONNX_FORMAT_VERSION):
            raise ExportError(f"{where}: unknown babyemo ONNX format version {version!r}.",
                              f"this babyemo reads version {ONNX_FORMAT_VERSION}; re-export it")
        try:
            known = {"babyemo_format", "babyemo_format_version", "class_names", "input", "arch",
                     "arch_kwargs", "faces", "source_checkpoint", "source_checkpoint_sha256",
                     "weights_sha256", "int8"}
            extra = {k: _maybe_json(v) for k, v in props.items() if k not in known}
            return cls(class_names=list(json.loads(props["class_names"])),
                       input_spec=InputSpec.from_dict(json.loads(props["input"])),
                       arch=props["arch"], arch_kwargs=dict(json.loads(props["arch_kwargs"])),
                       faces=json.loads(props["faces"]),
                       source_checkpoint=props["source_checkpoint"],
                       source_checkpoint_sha256=props["source_checkpoint_sha256"],
                       weights_sha256=props["weights_sha256"],
                       int8=bool(json.loads(props["int8"])), extra=extra)
        except (KeyError, TypeError, ValueError) as e:
            raise ExportError(f"{where}: malformed babyemo metadata ({type(e).__name__}: {e}).",
                              "re-export it with `babyemo export CHECKPOINT --format onnx`"
                              ) from e

    @classmethod
    def for_checkpoint(cls, ckpt: Checkpoint, *, int8: bool = False,
                       extra: dict[str, Any] | None = None) -> OnnxMetadata:
        """The metadata of an export of ``ckpt``."""
        from babyemo.fs import sha256_file

        return cls(class_names=list(ckpt.class_names), input_spec=ckpt.input_spec,
                   arch=ckpt.arch, arch_kwargs=dict(ckpt.arch_kwargs), faces=ckpt.faces,
                   source_checkpoint=ckpt.path.name,
                   source_checkpoint_sha256=sha256_file(ckpt.path),
                   weights_sha256=weights_sha256(ckpt.state_dict), int8=int8,
                   extra=dict(extra or {}))


def _maybe_json(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


def check_matches(meta: OnnxMetadata, ckpt: Checkpoint, where: str | os.PathLike[str]) -> None:
    """Check that an exported model is the checkpoint's model with its preprocessing.

    Raises:
        ExportError: Class names, input spec or weights differ (the hint says how to
            re-export).
    """
    hint = f"re-export it: babyemo export {ckpt.path} --format onnx"
    if meta.class_names != list(ckpt.class_names):
        raise ExportError(f"{where} has class names {meta.class_names}, the checkpoint "
                          f"{ckpt.path} has {list(ckpt.class_names)}.", hint)
    if meta.input_spec != ckpt.input_spec:
        raise ExportError(f"{where} expects input {meta.input_spec.to_dict()}, the checkpoint "
                          f"{ckpt.path} uses {ckpt.input_spec.to_dict()}.", hint)
    if meta.weights_sha256 != weights_sha256(ckpt.state_dict):
        raise ExportError(f"{where} was exported from other weights than those of "
                          f"{ckpt.path} (from {meta.source_checkpoint}; the checkpoint was "
                          "retrained or replaced since).", hint)


def onnx_paths(checkpoint_path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Default file names of a checkpoint's exports: ``(<stem>.onnx, <stem>.int8.onnx)``
    beside it (``best.pt`` -> ``best.onnx``, ``best.int8.onnx``)."""
    p = Path(checkpoint_path)
    return p.with_name(p.stem + ".onnx"), p.with_name(p.stem + ".int8.onnx")


def find_onnx(checkpoint_path: str | os.PathLike[str]) -> Path:
    """The exported model beside a checkpoint: ``<stem>.onnx``, else ``<stem>.int8.onnx``.

    Raises:
        ExportError: Neither exists.
    """
    fp32, int8 = onnx_paths(checkpoint_path)
    for candidate in (fp32, int8):
        if candidate.is_file():
            return candidate
    raise ExportError(f"No exported ONNX model beside {checkpoint_path} ({fp32.name} or "
                      f"{int8.name}).", f"run `babyemo export {checkpoint_path} --format onnx` "
                      "(add --int8 for the quantized model), or pass --onnx FILE")


__all__ = ["ONNX_FORMAT", "ONNX_FORMAT_VERSION", "OnnxMetadata", "check_matches", "find_onnx",
           "onnx_paths"]
