"""Agreement statistics and region rasterisation of the labelling workspace (issue 19)."""

from __future__ import annotations

import pytest

from vinspect.dataset.agreement import cohen_kappa, confusion, fleiss_kappa
from vinspect.dataset.regions import parse_regions, region_boxes, region_mask
from vinspect.errors import DatasetError


def test_cohen_kappa_hand_computed() -> None:
    a = ["good"] * 6 + ["scratch"] * 4
    b = ["good"] * 5 + ["scratch"] * 5
    # p_o = 0.9, p_e = (6*5 + 4*5) / 100 = 0.5 -> 0.8
    assert cohen_kappa(a, b) == pytest.approx(0.8)
    assert cohen_kappa(["good"] * 3, ["good"] * 3) is None  # chance agreement is total: undefined
    assert confusion(a, b) == (["good", "scratch"], [[5, 1], [0, 4]])


def test_fleiss_kappa_hand_computed() -> None:
    ratings = [["a", "a", "a"], ["a", "a", "b"], ["b", "b", "b"], ["a", "b", "b"]]
    # P_i = 1, 1/3, 1, 1/3 -> mean 2/3; p_a = p_b = 1/2 -> P_e = 1/2; kappa = (2/3 - 1/2) / (1/2) = 1/3
    assert fleiss_kappa(ratings) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="same number"):
        fleiss_kappa([["a", "b"], ["a"]])


def test_regions_checked_and_rasterised() -> None:
    regions = parse_regions(
        [
            {"kind": "box", "code": "dent", "xyxy": [30, 20, 10, 5]},  # corners in any order
            {"kind": "polygon", "code": "dent", "points": [[40, 40], [60, 40], [50, 60]]},
            {"kind": "brush", "code": "scratch", "radius": 2, "points": [[5, 70], [25, 70]]},
        ],
        width=80,
        height=80,
        catalogue=("dent", "scratch"),
    )
    mask = region_mask(regions, width=80, height=80)
    assert mask[10, 15] == 255 and mask[45, 50] == 255 and mask[70, 15] == 255 and mask[0, 79] == 0
    assert region_boxes(regions, width=80, height=80) == [
        (10, 5, 30, 20, "dent"),
        (40, 40, 60, 60, "dent"),
        (3, 68, 27, 72, "scratch"),
    ]
    with pytest.raises(DatasetError, match=r"region 1 \(brush, dent\) point 2: point \(81, 3\) lies outside"):
        parse_regions(
            [{"kind": "brush", "code": "dent", "radius": 3, "points": [[1, 1], [81, 3]]}],
            width=80,
            height=80,
            catalogue=("dent",),
        )
    with pytest.raises(DatasetError, match="a polygon needs at least 3 points"):
        parse_regions(
            [{"kind": "polygon", "code": "dent", "points": [[1, 1], [2, 2]]}], width=80, height=80, catalogue=("dent",)
        )
    with pytest.raises(DatasetError, match="the box is empty"):
        parse_regions([{"kind": "box", "code": "dent", "xyxy": [3, 3, 3, 9]}], width=80, height=80, catalogue=("dent",))
