"""Strict: the base of every configuration and manifest model (unknown keys refused, frozen).

One definition, so a station file, a source mapping and a bundle manifest refuse the same way.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["Strict"]


class Strict(BaseModel):
    """A pydantic model that forbids unknown keys and cannot be changed after validation."""

    model_config = ConfigDict(extra="forbid", frozen=True)
