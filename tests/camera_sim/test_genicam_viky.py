"""GenICamSource against genicam's simulated GenTL producer viky.cti (issue #3).

viky: devices VikyTL_DEV_red/green/blue (serials 0, 1, 2), Width/Height 100-800, PixelFormat
RGBa8|Mono8, AcquisitionFrameRate 1-200 Hz, no trigger, exposure, gain or offsets, no device
timestamps. The unplug case destroys the device from another thread mid-fetch, which can crash
a process, so it runs in a child interpreter.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("harvesters.core")

from vinspect.camera.base import SourceState
from vinspect.camera.config import DeviceSelector, GenICamSourceConfig, OverlaySourceConfig
from vinspect.camera.factory import open_source
from vinspect.camera.genicam import GenICamSource, describe_devices
from vinspect.cli.camera import register
from vinspect.errors import CameraDisconnected, FeatureMissing
from vinspect.types import Frame, FrameFault

pytestmark = pytest.mark.genicam

MONO_640 = {"Width": 640, "Height": 480, "PixelFormat": "Mono8"}


def _config(serial: str = "0", **overrides: object) -> GenICamSourceConfig:
    data: dict[str, object] = {
        "device": {"serial_number": serial},
        "features": {**MONO_640, "AcquisitionFrameRate": 200.0},
    }
    return GenICamSourceConfig.model_validate(data | overrides)


def _frames(source: GenICamSource, n: int) -> list[Frame]:
    items = [source.read(timeout_s=1.0) for _ in range(n)]
    assert all(isinstance(i, Frame) for i in items), items
    return [i for i in items if isinstance(i, Frame)]


def test_viky_enumerate_lists_three_devices_with_key_features() -> None:
    devices = describe_devices([])
    assert [(d.device_id, d.serial_number) for d in devices] == [
        ("VikyTL_DEV_red", "0"),
        ("VikyTL_DEV_green", "1"),
        ("VikyTL_DEV_blue", "2"),
    ]
    assert all(d.status == "available" for d in devices)
    assert "Mono8" in devices[0].features["PixelFormat"]
    assert "TriggerMode" in devices[0].features["lacks"]


def test_viky_cli_cameras_prints_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["cameras"])
    assert args.handler(args) == 0
    out = capsys.readouterr().out
    assert "VikyTL_DEV_blue" in out and "serial" in out and "AcquisitionFrameRate" in out


def test_viky_configure_width_height_mono8_and_acquire_increasing_ids() -> None:
    with GenICamSource(_config(), source_id="cam") as source:
        assert source.state == SourceState.STREAMING
        frames = _frames(source, 20)
    ids = [f.frame_id for f in frames]
    assert ids == sorted(set(ids)) and ids[0] == 1
    first = frames[0]
    assert first.image.shape == (480, 640) and first.image.dtype == np.uint8
    assert (first.pixel_format, first.origin, first.device_ts_ns, first.source_id) == ("Mono8", "camera", None, "cam")
    assert not first.image.flags.writeable
    assert source.stats.frames == 20 and source.stats.gaps == 0
    assert source.state == SourceState.CLOSED


def test_viky_rgba8_is_delivered_as_rgb8_copies() -> None:
    features = {"Width": 320, "Height": 200, "PixelFormat": "RGBa8", "AcquisitionFrameRate": 100.0}
    with GenICamSource(_config(features=features), source_id="cam") as source:
        a, b = _frames(source, 2)
    assert a.image.shape == (200, 320, 3) and a.pixel_format == "RGB8"
    assert not np.array_equal(a.image, b.image)  # the square moved: b is not a view of a reused buffer


def test_viky_fetch_timeout_fires_within_its_bound() -> None:
    """F6: the timeout is honoured within +50 ms (the goal is +-20 ms; 2 shared cores here)."""
    config = _config(features={**MONO_640, "AcquisitionFrameRate": 1.0}, fetch_timeout_ms=2000)
    with GenICamSource(config, source_id="cam") as source:
        assert isinstance(source.read(timeout_s=2.0), Frame)
        start = time.monotonic()
        fault = source.read(timeout_s=0.2)
        elapsed = time.monotonic() - start
    assert isinstance(fault, FrameFault) and fault.reason == "timeout" and fault.frame_id is None
    assert 0.2 <= elapsed < 0.2 + 0.05, elapsed
    assert source.stats.timeouts == 1


def test_viky_missing_required_trigger_mode_is_a_clear_startup_error() -> None:
    config = _config(features={**MONO_640, "TriggerMode": "On"})
    with (
        pytest.raises(FeatureMissing, match=r"VikyTL_DEV_red .* lacks required feature\(s\) features.TriggerMode"),
        GenICamSource(config, source_id="cam"),
    ):
        pass
    with GenICamSource(_config(), source_id="cam") as source:  # the device was released
        assert isinstance(source.read(timeout_s=1.0), Frame)


def test_viky_missing_optional_feature_is_warned_and_skipped(caplog: pytest.LogCaptureFixture) -> None:
    config = _config(optional_features={"ExposureTime": 800.0, "Gain": 1.0})
    with caplog.at_level(logging.WARNING), GenICamSource(config, source_id="cam") as source:
        assert isinstance(source.read(timeout_s=1.0), Frame)
    assert "lacks optional feature ExposureTime" in caplog.text and "lacks optional feature Gain" in caplog.text


def test_viky_unknown_serial_lists_the_devices_found() -> None:
    config = _config().model_copy(update={"device": DeviceSelector(serial_number="42")})
    with (
        pytest.raises(CameraDisconnected, match=r"no device with serial_number='42'.*VikyTL_DEV_red"),
        GenICamSource(config, source_id="cam"),
    ):
        pass


def test_viky_two_devices_stream_at_once_through_one_producer() -> None:
    with GenICamSource(_config("0"), source_id="a") as a, GenICamSource(_config("2"), source_id="b") as b:
        assert isinstance(a.read(timeout_s=1.0), Frame) and isinstance(b.read(timeout_s=1.0), Frame)
        assert (a.device, b.device) == ("VikyTL_DEV_red (serial '0')", "VikyTL_DEV_blue (serial '2')")


def test_viky_open_keeps_our_sigint_handler() -> None:
    before = signal.getsignal(signal.SIGINT)
    with GenICamSource(_config(), source_id="cam"):
        assert signal.getsignal(signal.SIGINT) is before


def test_viky_overlay_frames_are_marked_genicam_replay(tmp_path: Path) -> None:
    (tmp_path / "good").mkdir()
    for i in range(2):
        cv2.imwrite(str(tmp_path / "good" / f"tile{i}.png"), np.full((16, 24), 100 + i, np.uint8))
    config = OverlaySourceConfig.model_validate(
        {
            "device": {"serial_number": "1"},
            "features": {**MONO_640, "AcquisitionFrameRate": 100.0},
            "replay": str(tmp_path),
        }
    )
    with open_source(config, source_id="demo") as source:
        frames = [source.read(timeout_s=1.0) for _ in range(3)]
    assert all(isinstance(f, Frame) for f in frames)
    assert [f.origin for f in frames if isinstance(f, Frame)] == ["genicam+replay"] * 3
    assert [f.frame_id for f in frames if isinstance(f, Frame)] == [1, 2, 3]
    assert [f.part_id for f in frames if isinstance(f, Frame)] == ["tile0", "tile1", "tile0"]
    assert [int(f.image[0, 0]) for f in frames if isinstance(f, Frame)] == [100, 101, 100]


UNPLUG_SCRIPT = textwrap.dedent("""
    import json, threading, time
    from vinspect.camera.config import GenICamSourceConfig
    from vinspect.camera.factory import open_source
    from vinspect.types import Frame

    config = GenICamSourceConfig.model_validate({
        "device": {"serial_number": "0"},
        "features": {"Width": 320, "Height": 240, "PixelFormat": "Mono8", "AcquisitionFrameRate": 5.0},
        "reconnect": {"initial_backoff_ms": 50, "max_backoff_ms": 400}})
    states, events = [], []
    with open_source(config, source_id="cam", listeners=(lambda c: states.append(c.new.value),)) as source:
        for _ in range(3):
            item = source.read(timeout_s=1.0)
            events.append(["frame", item.frame_id] if isinstance(item, Frame) else [item.reason, None])
        inner = source.inner
        threading.Timer(0.05, inner.unplug).start()   # mid-fetch: the next frame is 200 ms away
        unplugged = time.monotonic()
        resumed = None
        while time.monotonic() - unplugged < 10 and len([e for e in events if e[0] == "frame"]) < 6:
            item = source.read(timeout_s=0.5)
            if isinstance(item, Frame):
                events.append(["frame", item.frame_id])
                resumed = resumed or (time.monotonic() - unplugged if any(
                    e[0] == "disconnected" for e in events) else None)
            else:
                events.append([item.reason, item.frame_id])
        stats = dict(source.stats.snapshot())
    print(json.dumps({"events": events, "states": states, "stats": stats, "resumed_after_s": resumed}))
""")


@pytest.mark.slow
def test_viky_unplug_mid_fetch_then_reconnect_and_resume() -> None:
    """Destroy from another thread mid-fetch (pitfall 6) -> disconnected -> reconnect -> frames."""
    proc = subprocess.run(
        [sys.executable, "-c", UNPLUG_SCRIPT], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    events = result["events"]
    kinds = [e[0] for e in events]
    assert "disconnected" in kinds
    ids = [e[1] for e in events if e[0] == "frame"]
    assert ids == sorted(set(ids)) and len(ids) >= 6, events  # strictly increasing across the reconnect
    first_loss = kinds.index("disconnected")
    assert any(k == "frame" for k in kinds[first_loss:]), events
    assert result["stats"]["reconnects"] == 1 and result["stats"]["disconnects"] == 1
    assert result["states"][:2] == ["OPENING", "STREAMING"]
    assert result["states"][2:5] == ["FAILED", "OPENING", "STREAMING"]
    assert result["resumed_after_s"] < 5.0


def test_viky_reading_a_closed_source_is_an_error_not_a_crash() -> None:
    source = GenICamSource(_config(), source_id="cam")
    with source:
        pass
    with pytest.raises(Exception, match="not open"):
        source.read(timeout_s=0.1)


def test_viky_unplug_is_reported_as_disconnected_in_process() -> None:
    """The same fault without a concurrent fetch: unplug between reads is safe in-process."""
    with GenICamSource(_config(), source_id="cam") as source:
        assert isinstance(source.read(timeout_s=1.0), Frame)
        worker = threading.Thread(target=source.unplug)
        worker.start()
        worker.join()
        with pytest.raises(CameraDisconnected, match="VikyTL_DEV_red"):
            source.read(timeout_s=0.5)


def test_viky_read_timeout_is_capped_by_fetch_timeout_ms() -> None:
    config = _config(features={**MONO_640, "AcquisitionFrameRate": 1.0}, fetch_timeout_ms=100)
    with GenICamSource(config, source_id="cam") as source:
        start = time.monotonic()
        while not isinstance(source.read(timeout_s=5.0), FrameFault):
            start = time.monotonic()
        assert time.monotonic() - start < 0.1 + 0.05
