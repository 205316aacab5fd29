"""The exposure guard's statistics in ONNX Runtime at camera frame sizes (issue 12m).

    python bench/exposure_guard_latency.py [--runs 300] [--out bench/results/exposure_guard_latency.json]

Times the guard's sub-graph alone (``training.exposure.ExposureGuard``: the raw frame's mean grey
level and standard deviation) against the form issue 12g shipped (``mean((x - mean)^2)``, whose
scalar-broadcast ``Sub`` over every pixel ONNX Runtime runs slowly), exported the same way as the
inspection graph (TorchScript exporter, opset 17, dynamic height and width), 1 intra-op thread,
spinning off, the two sessions alternating call by call on the same random Mono8 frame.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.exposure import ExposureGuard

SIZES = ((289, 240), (640, 480), (1280, 1024), (2448, 2048))  # width x height


class Issue12gStatistics(nn.Module):
    """The guard's statistics as issue 12g exported them (the variance through ``x - mean``)."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image.to(torch.float32)
        mean = x.mean()
        std = ((x - mean) * (x - mean)).mean().sqrt()
        log_mean, log_std = torch.log1p(mean), torch.log1p(std)
        return torch.stack([log_mean, log_std, log_std - log_mean])


def _session(module: nn.Module, frame: torch.Tensor):  # type: ignore[no-untyped-def]
    import onnxruntime as ort

    buf = io.BytesIO()
    torch.onnx.export(
        module,
        (frame,),
        buf,
        input_names=["image"],
        opset_version=17,
        dynamo=False,
        dynamic_axes={"image": {0: "h", 1: "w"}},
    )
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(buf.getvalue(), sess_options=options, providers=["CPUExecutionProvider"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parent / "results" / "exposure_guard_latency.json"
    )
    args = ap.parse_args()
    guard = ExposureGuard(torch.zeros(3), torch.full((3,), 10.0))
    rows = []
    for width, height in SIZES:
        frame = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (height, width, 1), dtype=np.uint8))
        sessions = {"issue_12g": _session(Issue12gStatistics(), frame), "now": _session(guard, frame)}
        feed = {"image": frame.numpy()}
        for s in sessions.values():
            for _ in range(5):
                s.run(None, feed)
        times: dict[str, list[float]] = {name: [] for name in sessions}
        runs = max(30, args.runs // 10) if width * height > 2_000_000 else args.runs
        for _ in range(runs):
            for name, s in sessions.items():
                start = time.perf_counter()
                s.run(None, feed)
                times[name].append((time.perf_counter() - start) * 1e3)
        row = {"frame": f"{width}x{height}", "runs": runs}
        for name, t in times.items():
            row[f"{name}_p50_ms"] = round(float(np.percentile(t, 50)), 3)
            row[f"{name}_p99_ms"] = round(float(np.percentile(t, 99)), 3)
        print(json.dumps(row), flush=True)
        rows.append(row)
    doc = {
        "what": "exposure guard statistics alone in ONNX Runtime, issue 12g's form against today's, 1 thread",
        "command": "python " + " ".join(["bench/exposure_guard_latency.py", *sys.argv[1:]]),
        "rows": rows,
    }
    args.out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
