"""Inline inspection: preprocess, infer, postprocess, decide, signal, record."""
