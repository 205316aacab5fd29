"""Golden-reference runtime: registration bounds, bad frames, detection of injected defects (issue 11)."""

from __future__ import annotations

import numpy as np
import pytest

from vinspect.dataset.linechange import LineChange, apply_change
from vinspect.dataset.synth_pcb import draw_board, inject_defect
from vinspect.errors import FrameRejected, ModelError
from vinspect.models.reference import PreparedReference, ReferenceModel
from vinspect.models.reference_spec import CompareLimits, PartReference, PinnedFile, ReferenceSpec
from vinspect.report.boxes import match_boxes

LIMITS = CompareLimits(jitter_px=1, contrast_at=0.4, open_px=1, group_px=4, mass_at=4.0)
LINE = LineChange(
    dx_px=6.0, dy_px=-4.0, rotation_deg=0.8, gain=1.08, offset=-10.0, noise_sigma=2.0, jpeg_quality=90, seed=3
)


def _model(board: np.ndarray, limits: CompareLimits = LIMITS, **masks: np.ndarray) -> ReferenceModel:
    part = PartReference(part_number="pcb-1", image=PinnedFile(file="reference/pcb-1.png", sha256="0" * 64))
    spec = ReferenceSpec(parts=(part,), limits=limits)
    return ReferenceModel(spec, PreparedReference("pcb-1", board, limits=limits, **masks))


@pytest.fixture(scope="module")
def board() -> np.ndarray:
    return draw_board(0)


def test_good_part_within_bounds_passes_with_no_regions(board: np.ndarray) -> None:
    out = _model(board).run(apply_change(board, LINE))
    assert out.score < 0.5 and out.regions == ()
    assert out.anomaly_map.shape == board.shape


@pytest.mark.parametrize("kind", ["open", "short", "pin-hole", "copper"])
def test_injected_defect_is_found_where_it_is(board: np.ndarray, kind: str) -> None:
    defective, box = inject_defect(board, kind, seed=5)
    from vinspect.dataset.linechange import move_box

    out = _model(board).run(apply_change(defective, LINE))
    assert out.score >= 0.5 and out.regions
    recalled, _ = match_boxes([r.box_xyxy for r in out.regions], [move_box(box, LINE, board.shape)])
    assert recalled == [True]


def test_shift_beyond_bound_is_alignment_failure(board: np.ndarray) -> None:
    far = apply_change(board, LineChange(dx_px=45.0, dy_px=0.0))
    with pytest.raises(FrameRejected) as info:
        _model(board).run(far)
    assert info.value.reason == "alignment"


def test_rotation_beyond_bound_is_alignment_failure(board: np.ndarray) -> None:
    with pytest.raises(FrameRejected) as info:
        _model(board).run(apply_change(board, LineChange(rotation_deg=6.0)))
    assert info.value.reason == "alignment"


def test_another_part_is_alignment_failure(board: np.ndarray) -> None:
    with pytest.raises(FrameRejected) as info:
        _model(board).run(draw_board(9))
    assert info.value.reason == "alignment"


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (np.zeros((256, 256), np.uint8), "blank_frame"),
        (np.full((256, 256), 255, np.uint8), "saturated_frame"),
        (np.full((256, 256), 128, np.uint8), "blank_frame"),
        (np.zeros((200, 256), np.uint8), "frame_size"),
    ],
)
def test_unusable_frames_are_refused_with_reason(board: np.ndarray, frame: np.ndarray, reason: str) -> None:
    with pytest.raises(FrameRejected) as info:
        _model(board).run(frame)
    assert info.value.reason == reason


def test_ignore_mask_hides_a_defect_and_tight_mask_finds_a_faint_one(board: np.ndarray) -> None:
    defective, (x1, y1, x2, y2) = inject_defect(board, "copper", seed=2)
    mask = np.zeros_like(board)
    mask[max(y1 - 8, 0) : y2 + 8, max(x1 - 8, 0) : x2 + 8] = 255
    assert _model(board).run(defective).score >= 0.5
    assert _model(board, ignore_mask=mask).run(defective).score < 0.5
    faint = board.copy()
    faint[defective != board] = 130  # half the contrast of real copper
    loose = CompareLimits(jitter_px=1, contrast_at=0.55, open_px=1, mass_at=4.0, tight_factor=0.5)
    assert _model(board, loose).run(faint).score < 0.5
    assert _model(board, loose, tight_mask=mask).run(faint).score >= 0.5


def test_empty_or_wrong_size_mask_is_refused(board: np.ndarray) -> None:
    with pytest.raises(ModelError, match="ignore mask is empty"):
        _model(board, ignore_mask=np.zeros_like(board))
    with pytest.raises(ModelError, match="tight mask is 10x10"):
        _model(board, tight_mask=np.ones((10, 10), np.uint8))


def test_local_grid_takes_out_residual_shifts(board: np.ndarray) -> None:
    import cv2

    from vinspect.models.registration import LocalGrid

    grid = LocalGrid(board, grid=4)
    shifted = cv2.warpAffine(
        board, np.float32([[1, 0, 1.5], [0, 1, -2.0]]), board.shape[::-1], borderMode=cv2.BORDER_REPLICATE
    )
    before = np.abs(shifted.astype(int) - board).mean()
    after = np.abs(grid.apply(shifted).astype(int) - board).mean()
    assert after < before / 3


def test_non_rigid_touch_up_keeps_good_parts_good_and_defects_found(board: np.ndarray) -> None:
    touched = LIMITS.model_copy(update={"local_grid": 4})
    assert _model(board, touched).run(apply_change(board, LINE)).score < 0.5
    defective, _ = inject_defect(board, "short", seed=5)
    assert _model(board, touched).run(apply_change(defective, LINE)).score >= 0.5
