"""One ONNX Runtime session builder: the station's settings, spinning off by default (issue 12)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vinspect.errors import ModelError
from vinspect.models.runtime import DEFAULT_ALLOW_SPINNING, SessionSettings, create_session, load_bundle


def _options(session: object) -> tuple[int, int, str]:
    options = session.get_session_options()  # type: ignore[attr-defined]
    return (
        options.intra_op_num_threads,
        options.inter_op_num_threads,
        options.get_session_config_entry("session.intra_op.allow_spinning"),
    )


def test_default_session_is_one_thread_without_spinning(tiny_bundle: Path) -> None:
    assert DEFAULT_ALLOW_SPINNING is False
    assert _options(create_session(tiny_bundle / "model.onnx")) == (1, 1, "0")


@pytest.mark.parametrize(("threads", "spinning", "entry"), [(2, True, "1"), (2, False, "0"), (1, True, "1")])
def test_settings_reach_the_session(tiny_bundle: Path, threads: int, spinning: bool, entry: str) -> None:
    session = create_session(
        tiny_bundle / "model.onnx", SessionSettings(intra_op_threads=threads, allow_spinning=spinning)
    )
    assert _options(session) == (threads, 1, entry)


def test_load_bundle_builds_its_session_from_the_settings(tiny_bundle: Path) -> None:
    bundle = load_bundle(tiny_bundle, threads=2, allow_spinning=True)
    assert _options(bundle.model._session) == (2, 1, "1")  # type: ignore[union-attr]
    assert _options(load_bundle(tiny_bundle).model._session) == (1, 1, "0")  # type: ignore[union-attr]


@pytest.mark.parametrize("threads", [0, -1, True, 1.5])
def test_bad_thread_count_is_refused(threads: object) -> None:
    with pytest.raises(ModelError, match="intra-op threads must be an integer >= 1"):
        SessionSettings(intra_op_threads=threads)  # type: ignore[arg-type]


def test_unloadable_graph_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"\x08\x07not a graph")
    with pytest.raises(ModelError, match=r"broken\.onnx: ONNX Runtime cannot load the model"):
        create_session(path)


def test_station_setting_reaches_the_pipeline(tmp_path: Path) -> None:
    from vinspect.station_file import StationConfig

    base = {"station_id": "s1", "source": {"kind": "synthetic"}, "model": {"path": str(tmp_path)}}
    assert StationConfig.model_validate(base).pipeline_config().ort_allow_spinning is False
    config = StationConfig.model_validate({**base, "ort_threads": 2, "ort_allow_spinning": True}).pipeline_config()
    assert (config.ort_threads, config.ort_allow_spinning) == (2, True)
