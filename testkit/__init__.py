"""Test helpers shared by tests/ and bench/ (never imported by the runtime or shipped).

* :mod:`testkit.bundles`: the tiny ONNX bundle the tests and benchmarks run, its operating
  point and golden samples.

Fakes of a runtime seam ship beside the seam instead (``vinspect.camera.scripted``,
``vinspect.models.fakes``).
"""
