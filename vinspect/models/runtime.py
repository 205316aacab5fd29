"""OnnxModel: the only importer of onnxruntime. Loads a verified bundle and runs it.

The runtime executes ONNX and nothing else: no pickle, no ``torch.load``. A bundle is trusted
only after ``model.onnx`` hashes to the sha256 its manifest pins, and its graph matches the
input/output contract documented in :mod:`vinspect.models.manifest`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from vinspect.errors import ModelError, ModelIntegrityError
from vinspect.files import sha256_file
from vinspect.models.combined import CombinedModel
from vinspect.models.manifest import MODEL_NAME, ModelManifest, read_manifest
from vinspect.models.output import Model, RawOutput
from vinspect.models.reference import load_reference_model
from vinspect.types import ModelRef

__all__ = [
    "DEFAULT_ALLOW_SPINNING",
    "Bundle",
    "OnnxModel",
    "RawOutput",
    "SessionSettings",
    "create_session",
    "load_bundle",
    "sha256_file",
]

logger = logging.getLogger(__name__)

_OUTPUTS = ("score", "anomaly_map", "defect_probs")
_PICKLE_MAGIC = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")
_ZIP_MAGIC = b"PK\x03\x04"


DEFAULT_ALLOW_SPINNING = False  # measured: see SessionSettings


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionSettings:
    """How every ONNX Runtime session in vinspect is built (the station's and training's parity check).

    Defaults come from ``bench/ort_sessions_bench.py`` (``bench/results/ort_sessions.json``), see the
    README's "ONNX Runtime sessions": one intra-op thread with spinning off. A process may hold
    two sessions (the active model and a hot-swap candidate, later a shadow model); with spinning
    on, each session's idle pool threads busy-wait for work and take a core from the other
    session and from the camera/recording threads.

    Attributes:
        intra_op_threads: threads one ``run`` may use (1 leaves the second core to the rest of
            the station).
        allow_spinning: whether idle intra-op threads busy-wait (``session.intra_op.allow_spinning``).
            Irrelevant at one thread (no pool threads exist).
    """

    intra_op_threads: int = 1
    allow_spinning: bool = DEFAULT_ALLOW_SPINNING

    def __post_init__(self) -> None:
        if (
            isinstance(self.intra_op_threads, bool)
            or not isinstance(self.intra_op_threads, int)
            or self.intra_op_threads < 1
        ):
            raise ModelError(f"ONNX Runtime intra-op threads must be an integer >= 1, got {self.intra_op_threads!r}")


def create_session(path: Path, settings: SessionSettings | None = None) -> Any:
    """The one ONNX Runtime session builder: CPU provider, sequential execution, one inter-op thread.

    Inter-op threads only matter for ``ORT_PARALLEL`` execution, which the inspection graph (one
    chain of ops) does not benefit from, so they stay at 1.

    Raises:
        ModelError: ONNX Runtime cannot load the file.
    """
    import onnxruntime as ort  # lazy: keeps `import vinspect` light

    settings = settings or SessionSettings()
    options = ort.SessionOptions()
    options.intra_op_num_threads = settings.intra_op_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if settings.allow_spinning else "0")
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own untyped exceptions for bad graphs
        raise ModelError(f"{path}: ONNX Runtime cannot load the model: {exc}") from exc


def _check_not_pickle(path: Path) -> None:
    with path.open("rb") as fh:
        head = fh.read(4)
    if head[:2] in _PICKLE_MAGIC or head == _ZIP_MAGIC:
        raise ModelIntegrityError(
            f"{path}: this is a pickle/torch checkpoint, not ONNX; the runtime loads only ONNX bundles"
        )


class OnnxModel:
    """An ONNX Runtime session over a verified ``model.onnx``.

    Args:
        path: the ONNX file.
        expected_sha256: the hash pinned by the manifest; checked before the file is parsed.
        settings: how the session is built (default :class:`SessionSettings`).
    """

    def __init__(self, path: Path, *, expected_sha256: str, settings: SessionSettings | None = None) -> None:
        if not path.is_file():
            raise ModelError(f"{path}: model file missing")
        _check_not_pickle(path)
        actual = sha256_file(path)
        if actual != expected_sha256:
            raise ModelIntegrityError(
                f"{path}: sha256 {actual} does not match the manifest's {expected_sha256} (edited or corrupt model)"
            )
        self._session = create_session(path, settings)
        self._check_contract(path)

    def _check_contract(self, path: Path) -> None:
        inputs = self._session.get_inputs()
        if len(inputs) != 1 or inputs[0].name != "image" or inputs[0].type != "tensor(uint8)":
            found = [(i.name, i.type) for i in inputs]
            raise ModelError(f"{path}: graph must take one uint8 input 'image'; it takes {found}")
        names = [o.name for o in self._session.get_outputs()]
        if tuple(names) != _OUTPUTS:
            raise ModelError(f"{path}: graph outputs must be {list(_OUTPUTS)}; found {names}")

    def run(self, image: npt.NDArray[np.uint8]) -> RawOutput:
        """Run one H×W×C uint8 image; raises ModelError if ONNX Runtime fails."""
        try:
            score, amap, probs = self._session.run(None, {"image": image})
        except Exception as exc:  # ORT boundary: its exceptions are not a typed hierarchy
            raise ModelError(f"inference failed: {exc}") from exc
        return RawOutput(
            score=float(np.asarray(score).reshape(-1)[0]),
            anomaly_map=np.asarray(amap, dtype=np.float32),
            defect_probs=np.asarray(probs, dtype=np.float32).reshape(-1),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Bundle:
    """A loaded, verified bundle: its manifest, its session and where it lives."""

    path: Path
    manifest: ModelManifest
    model: Model

    @property
    def ref(self) -> ModelRef:
        """The identity every inspection record carries."""
        m = self.manifest
        return ModelRef(name=m.name, version=m.version, sha256=m.sha256)


def load_bundle(
    bundle_dir: Path, *, threads: int = 1, part_number: str | None = None, allow_spinning: bool = DEFAULT_ALLOW_SPINNING
) -> Bundle:
    """Load and verify a bundle directory (manifest schema, sha256, graph contract).

    ``threads`` and ``allow_spinning`` build the session's :class:`SessionSettings`.

    A ``reference`` bundle loads the golden reference of ``part_number`` (None: its only one),
    every file checked against its pinned sha256.

    Raises:
        ModelError: missing/invalid manifest or model, incompatible graph.
        ModelIntegrityError: sha256 mismatch, or a pickle where ONNX belongs.
    """
    if bundle_dir.is_file():
        _check_not_pickle(bundle_dir)
        raise ModelError(f"{bundle_dir}: expected a bundle directory (model.onnx + manifest.json), got a file")
    if not bundle_dir.is_dir():
        raise ModelError(f"{bundle_dir}: model bundle not found")
    manifest = read_manifest(bundle_dir)
    settings = SessionSettings(intra_op_threads=threads, allow_spinning=allow_spinning)
    model: Model
    if manifest.task == "reference":
        reference = load_reference_model(bundle_dir, expected_sha256=manifest.sha256, part_number=part_number)
        companion = reference.spec.anomaly
        model = reference
        if companion is not None:
            onnx = OnnxModel(bundle_dir / companion.file, expected_sha256=companion.sha256, settings=settings)
            model = CombinedModel(reference, onnx, companion)
    else:
        model = OnnxModel(bundle_dir / MODEL_NAME, expected_sha256=manifest.sha256, settings=settings)
    if manifest.labels and manifest.task == "anomaly":
        raise ModelError(f"{bundle_dir}: manifest lists defect labels but task is {manifest.task!r}")
    logger.info("model loaded", extra={"model": manifest.name, "version": manifest.version})
    return Bundle(path=bundle_dir, manifest=manifest, model=model)
