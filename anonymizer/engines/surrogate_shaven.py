"""Clean-shaven surrogates for clean-shaven patients (issue-11q7).

A man's synthetic face is mixed from men's textures, and most of the bank's men show stubble or a
moustache: mixed, the donors' beards give every man a moustache and a stubbled chin, clean-shaven or not
(London-set 067). Whether the patient is clean-shaven is read from the fine grain of his chin against his
upper cheeks (``chin_grain``): one bit of the patient's photo decides, none of his pixels is copied. For a
clean-shaven patient the synthetic lower face loses the donors' dark, narrow structure (lifted to a wide
median: moustache, stubble patches) and the detail donor's dark specks; its broad light stays, and the
Poisson blend's broad shading is the patient's anyway (surrogate_shape.broad_shading).
"""

from __future__ import annotations

import cv2
import numpy as np

from anonymizer.faces.regions import interocular

GRAIN = 0.03  # × inter-ocular distance: the blur whose residue is stubble and pores
DETAIL_LIMIT = 90  # percentile of the cheeks' fine band that a shaved chin's detail is held within
CLOSING = 0.2  # × inter-ocular distance: the shave's median window is twice this across
MOUTH_HOLE = 0.05  # × inter-ocular distance: the lips and their line keep their darkness
NOSE_HOLE = 0.03  # likewise the nostrils and the nose's sides


def _holes(reference: np.ndarray, size: int) -> np.ndarray:
    """(S, S) float32: 1 over the mouth and the lower nose (with margins), the features the shave would
    whiten."""
    iod = interocular(reference)
    mouth = np.zeros((size, size), np.uint8)
    cv2.fillPoly(mouth, [np.round(reference[48:60]).astype(np.int32)], 1)
    mouth = cv2.dilate(mouth, _disc(2 * MOUTH_HOLE * iod))
    nose = np.zeros((size, size), np.uint8)
    cv2.fillConvexPoly(nose, cv2.convexHull(np.round(reference[27:36]).astype(np.int32)), 1)
    nose = cv2.dilate(nose, _disc(2 * NOSE_HOLE * iod))
    return np.maximum(mouth, nose).astype(np.float32)


def shave_weight(beard: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(S, S, 1) float32: the beard area (``beard``, surrogate_synthesis.beard_area) less the mouth and the
    nose, softened: where ``shaved`` acts."""
    holes = cv2.GaussianBlur(_holes(reference, beard.shape[0]), (0, 0), 0.02 * interocular(reference))
    return (beard[..., 0] * (1.0 - holes))[..., None].astype(np.float32)


def chin_grain(texture: np.ndarray, landmarks: np.ndarray) -> float:
    """The fine grain (mean |lightness − its blur at ``GRAIN`` × inter-ocular|) of ``texture``'s chin against
    its upper cheeks': about 0.7-1.2 on women's and clean-shaven men's faces of the London set, 1.3-3.3 on
    stubbled or bearded men's (issue-11q7's survey). NaN where either area is empty."""
    iod = interocular(landmarks)
    lightness = cv2.cvtColor(np.clip(texture, 0, 255).astype(np.uint8), cv2.COLOR_RGB2LAB)[..., 0]
    lightness = lightness.astype(np.float32)
    grain = np.abs(lightness - cv2.GaussianBlur(lightness, (0, 0), GRAIN * iod))
    lm = np.asarray(landmarks, np.float64)
    chin = grain[int(lm[57, 1] + 0.1 * iod) : int(lm[8, 1] - 0.12 * iod), int(lm[7, 0]) : int(lm[9, 0])]
    cheeks = grain[_cheeks(landmarks, grain.shape[0])]
    if chin.size == 0 or cheeks.size == 0:
        return float("nan")
    return float(chin.mean() / max(float(cheeks.mean()), 1e-3))


def _cheeks(landmarks: np.ndarray, size: int) -> np.ndarray:
    """(S, S) bool: the upper cheeks, from 0.3 × inter-ocular below the eyes to the nose's base, beside the
    nose: skin on nearly every face, bearded or not."""
    lm = np.asarray(landmarks, np.float64)
    iod = interocular(lm)
    mask = np.zeros((size, size), bool)
    rows = slice(int(lm[36:48, 1].mean() + 0.3 * iod), int(lm[33, 1]))
    mask[rows, int(lm[36, 0]) : int(lm[31, 0] - 0.1 * iod)] = True
    mask[rows, int(lm[35, 0] + 0.1 * iod) : int(lm[45, 0])] = True
    return mask


def is_shaven(texture: np.ndarray, landmarks: np.ndarray, limit: float) -> bool:
    """Whether ``texture`` (the patient's, shape-free) has a chin no grainier than ``limit`` × his cheeks."""
    grain = chin_grain(texture, landmarks)
    return bool(np.isfinite(grain) and grain <= limit)


def shaved(texture: np.ndarray, weight: np.ndarray, reference: np.ndarray, share: float) -> np.ndarray:
    """``texture`` (float32 RGB, reference shape) lifted by ``share`` of the way to its median over a window
    ``CLOSING`` × inter-ocular distance across, where ``weight`` says, wherever it is darker: dark structure
    narrower than half the window (a moustache, a stubble patch) fills in with the skin around it; lighter
    pixels are never darkened. (A greyscale closing lifted the skin to the upper envelope of its grain: a
    lighter, grey chin.)"""
    if share <= 0:
        return texture
    side = int(2 * CLOSING * interocular(reference)) | 1
    median = cv2.medianBlur(np.clip(texture + 0.5, 0, 255).astype(np.uint8), side).astype(np.float32)
    return (texture + share * weight * np.maximum(median - texture, 0.0)).astype(np.float32)


def shaved_detail(detail: np.ndarray, weight: np.ndarray, reference: np.ndarray, share: float) -> np.ndarray:
    """The detail donor's fine band (``detail``) held, over ``weight`` × ``share``, within its
    ``DETAIL_LIMIT`` percentile of magnitude on the upper cheeks: a stubbled donor's hairs (dark, or light
    specks when fair) stand out of that band; pores and fine lines stay in it."""
    limit = float(np.percentile(np.abs(detail[_cheeks(reference, detail.shape[0])]), DETAIL_LIMIT))
    held = np.clip(detail, -limit, limit)
    return (detail + share * weight * (held - detail)).astype(np.float32)


def _disc(diameter: float) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (int(diameter) | 1,) * 2)
