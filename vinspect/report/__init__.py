"""Offline evaluation and reports: score a dataset through a bundle, render HTML and overlays.

Sits beside ``api`` in the layers (it composes models, pipeline and dataset, and nothing below
imports it).
"""
