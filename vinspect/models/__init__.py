"""Model bundles: manifest schema, ONNX Runtime session, registry, threshold calibration."""
