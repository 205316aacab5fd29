"""Installed size of a runtime-only install (``vinspect[camera,web,line]``) next to the full
development set: ``python bench/install_size.py``.

Sums the files each distribution's RECORD lists, over the dependency closure of vinspect with
the given extras, as installed in the current environment (no download, no fresh install).
"""

from __future__ import annotations

import contextlib
import re
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

SETS = {
    "runtime (camera, web, line)": ("camera", "web", "line"),
    "runtime + postgres": ("camera", "web", "line", "postgres"),
    "full development (every extra)": ("camera", "web", "line", "postgres", "train", "dev"),
}


def closure(root: str, extras: tuple[str, ...]) -> dict[str, metadata.Distribution]:
    """Every installed distribution ``root[extras]`` needs here (markers evaluated for this machine)."""
    seen: dict[str, metadata.Distribution | None] = {}
    todo: list[tuple[str, tuple[str, ...]]] = [(root, extras)]
    while todo:
        name, wanted = todo.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            seen[key] = None
            continue
        seen[key] = dist
        for line in dist.requires or []:
            requirement = Requirement(line)
            marker = requirement.marker
            if marker is not None and not any(marker.evaluate({"extra": e}) for e in (*wanted, "")):
                continue  # another extra's, another platform's or another Python's dependency
            todo.append((requirement.name, tuple(requirement.extras)))
    return {k: v for k, v in seen.items() if v is not None}


def installed_bytes(dist: metadata.Distribution) -> int:
    total = 0
    for item in dist.files or []:
        with contextlib.suppress(OSError):
            total += Path(str(dist.locate_file(item))).stat().st_size
    return total


def main() -> None:
    for label, extras in SETS.items():
        dists = closure("vinspect", extras)
        dists.pop("vinspect", None)
        total = sum(installed_bytes(d) for d in dists.values())
        torch = "with" if "torch" in dists else "without"
        print(f"{label}: {len(dists)} distributions, {total / 2**20:.0f} MiB, {torch} torch")


if __name__ == "__main__":
    main()
