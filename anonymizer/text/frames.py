"""The text step over the frames of one dataset, as the pixel stage calls it (after the face step).

The preserved clinical region comes from the face step's landmarks (the same masks it restored exactly), so
text touching it holds the photo instead of being filled. Counts and boxes are logged; the text never is.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from anonymizer.faces.regions import LandmarkRegions, RegionSettings
from anonymizer.plans import Region, TextAction, TextPlan, TextReport
from anonymizer.text.step import TextResult, scrub, touches_protected

log = logging.getLogger(__name__)


def protected_mask(
    shape: tuple[int, ...], landmarks: Sequence[np.ndarray], preserve: tuple[Region, ...],
    regions: RegionSettings | None = None,
) -> np.ndarray | None:
    """Bool mask of every face's preserved region in a photo of ``shape``; None when nothing is preserved."""
    if not preserve or not landmarks:
        return None
    mask = np.zeros(shape[:2], bool)
    provider = LandmarkRegions(regions or RegionSettings())
    h, w = shape[:2]
    for lm in landmarks:
        pad = int(0.3 * float(np.ptp(lm[:, 0]))) + 8  # regions may reach a little past the landmarks
        x0, y0 = np.floor(lm.min(0)).astype(int) - pad
        x1, y1 = np.ceil(lm.max(0)).astype(int) + pad
        roi = (max(0, int(x0)), max(0, int(y0)), min(w, int(x1)), min(h, int(y1)))
        if roi[2] <= roi[0] or roi[3] <= roi[1]:
            continue
        mask[roi[1] : roi[3], roi[0] : roi[2]] |= provider.masks(np.empty(0), lm, preserve, roi)
    return mask


def merge(reports: Sequence[TextReport], action: TextAction) -> TextReport:
    """One report for a dataset's frames: checked only when every frame was."""
    if not reports:
        return TextReport(action, checked=action is not TextAction.KEEP)
    return TextReport(
        action,
        checked=all(r.checked for r in reports),
        found=sum(r.found for r in reports),
        kept=sum(r.kept for r in reports),
        redacted=sum(r.redacted for r in reports),
        boxes=tuple(b for r in reports for b in r.boxes),
    )


def check_frames(
    frames: Sequence[np.ndarray],
    plan: TextPlan,
    protected: Sequence[np.ndarray | None],
    originals: Sequence[np.ndarray] | None = None,
) -> tuple[list[np.ndarray], TextReport, str]:
    """Scrub every frame: (frames after the step, merged report, first quarantine reason or "").

    ``originals``: the frames as taken, when ``frames`` are the face step's output: text there that
    touches a preserved region holds the photo even if the face step replaced part of it."""
    for original, mask in zip(originals or (), protected, strict=False):
        if touches_protected(original, plan, mask):
            reason = "text-over-preserved-region"
            log.info("text step", extra={"action": plan.action.value, "outcome": reason})
            return list(frames), merge([], plan.action), reason
    results: list[TextResult] = [scrub(f, plan, p) for f, p in zip(frames, protected, strict=True)]
    report = merge([r.report for r in results], plan.action)
    reason = next((r.reason for r in results if not r.ok), "")
    log.info(
        "text step",
        extra={"action": plan.action.value, "found": report.found, "kept": report.kept,
               "redacted": report.redacted, "boxes": [list(b) for b in report.boxes][:20],
               "outcome": reason or ("clean" if report.checked else "unchecked")},
    )
    images = [r.image if r.image is not None else f for r, f in zip(results, frames, strict=True)]
    return images, report, reason
