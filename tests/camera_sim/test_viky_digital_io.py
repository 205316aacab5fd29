"""Why `signal.kind: camera_output` has no GenICam implementation (issue 15): genicam's simulator
viky.cti, the only GenTL producer CI has, exposes none of the SFNC digital-I/O nodes a
``line_outputs()`` on GenICamSource would drive. If a genicam release adds them, this fails: then
build ``GenICamSource.line_outputs`` (vinspect.pipeline.signals.camera_output.NodeMapOutputs)
and test it here against viky.

Runs in a child interpreter: a second Harvester on viky.cti in the test process would take the
devices from the camera tests' shared one."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("harvesters.core")

pytestmark = pytest.mark.genicam

DIGITAL_IO = (
    "LineSelector",
    "LineMode",
    "LineSource",
    "LineInverter",
    "LineStatus",
    "UserOutputSelector",
    "UserOutputValue",
    "UserOutputValueAll",
)

PROBE = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    import genicam
    from harvesters.core import Harvester
    h = Harvester()
    h.add_file(str(Path(genicam.__path__[0]) / "viky.cti"), check_existence=True, check_validity=True)
    h.update()
    found = {}
    for index in range(len(h.device_info_list)):
        acquirer = h.create(index)
        try:
            node_map = acquirer.remote_device.node_map
            found[index] = {"width": hasattr(node_map, "Width"),
                            "io": [n for n in json.loads(sys.argv[1]) if hasattr(node_map, n)]}
        finally:
            acquirer.destroy()
    h.reset()
    print(json.dumps(found))
""")


def test_viky_devices_have_no_sfnc_digital_outputs() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(DIGITAL_IO)], capture_output=True, text=True, timeout=120, check=True
    )
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(found) == 3  # VikyTL_DEV_red/green/blue
    assert all(device["width"] for device in found.values())  # the probe does read real node maps
    assert {index: device["io"] for index, device in found.items()} == {"0": [], "1": [], "2": []}
