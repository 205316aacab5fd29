"""Reviewer web app and JSON API (FastAPI). Nothing else in vinspect imports this package."""
