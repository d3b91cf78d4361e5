"""Photo-scale skin detail from ONE consented donor: a synthetic face's finest band, quilted from real skin.

A synthetic face is built in a 512-px crop; pasted into a photo whose face is larger (1.5x on the London Set,
3-4x in a 12 MP portrait) it is upsampled and lacks the photo's finest band: pores, fine lines and grain at
pixel scale, so it reads as airbrushed next to the untouched ears and neck. That band is taken here from the
skin of one donor (the surrogate engine's detail donor, never the patient: moles and scars identify people):
square patches of the donor's luminance fine band, cut where the donor's shape-free texture is skin, are laid
at the photo's pixel scale over the pasted face in overlapping windows, each from near the same place of the
face (forehead detail on the forehead, cheek detail on the cheeks) with a seeded offset. Only a statistic of
the patient's photo sets its strength (how much fine-band energy the paste lost), never its pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

PATCH = 24  # patch side in photo pixels; windows overlap by half
SOURCE_SIGMA = 2.0  # the donor band: texture minus its blur at this sigma (crop pixels)
JITTER = 1.5  # seeded offset of each patch's source, in patch sides
NEAREST = 48  # each patch is drawn among this many skin centres nearest to its place (no repeated patch)
CELL = 16  # crop pixels per cell of the nearest-centre lookup table
CLIP = 3.0  # the donor band is soft-clipped at this many robust deviations: pores stay, a mole does not


@dataclass(frozen=True)
class SkinSource:
    """A donor's luminance fine band in the engine's shape-free crop and where whole patches lie in skin."""

    band: np.ndarray  # (S, S) float32, zero-mean fine band of the donor's lightness
    centres: np.ndarray  # (N, 2) int32 (x, y) crop coordinates of patch centres inside the skin
    nearest: np.ndarray  # (G, G, K) int32: per CELL x CELL cell of the crop, its K nearest centres


def skin_source(texture: np.ndarray, skin: np.ndarray, patch: int = PATCH) -> SkinSource | None:
    """The donor's fine band (``texture`` (S, S, 3) uint8 RGB) and the patch centres on ``skin`` (S, S) bool;
    None when no whole patch fits on the skin."""
    gray = cv2.cvtColor(np.asarray(texture, np.uint8), cv2.COLOR_RGB2GRAY).astype(np.float32)
    band = gray - cv2.GaussianBlur(gray, (0, 0), SOURCE_SIGMA)
    spread = 1.4826 * float(np.median(np.abs(band[skin]))) + 1e-3 if skin.any() else 1.0
    band = CLIP * spread * np.tanh(band / (CLIP * spread))  # a mole or a stray hair would be repeated
    inside = cv2.erode(skin.astype(np.uint8), np.ones((patch + 1, patch + 1), np.uint8)) > 0
    half = patch // 2
    inside[:half, :] = inside[-half - 1 :, :] = False
    inside[:, :half] = inside[:, -half - 1 :] = False
    ys, xs = np.nonzero(inside)
    if not len(xs):
        return None
    centres = np.stack([xs, ys], 1)[:: max(1, len(xs) // 3000)].astype(np.int32)
    return SkinSource(band.astype(np.float32), centres, _shared_table(centres.tobytes(), skin.shape[0]))


@lru_cache(maxsize=4)
def _shared_table(centres: bytes, size: int) -> np.ndarray:
    """``_nearest_table`` for centres given as int32 (x, y) bytes, kept: the skin mask is the bank's
    reference shape's, the same for every donor, so every group's detail donor has the same centres, and
    the table cost 50-80 ms per group (read-only: shared between groups and threads)."""
    table = _nearest_table(np.frombuffer(centres, np.int32).reshape(-1, 2), size)
    table.flags.writeable = False
    return table


def _nearest_table(centres: np.ndarray, size: int) -> np.ndarray:
    """(G, G, K) indices of the K centres nearest to each lookup cell's middle (built once per donor)."""
    grid = (size + CELL - 1) // CELL
    k = min(NEAREST, len(centres))
    middles = (np.stack(np.meshgrid(np.arange(grid), np.arange(grid)), -1).reshape(-1, 2) + 0.5) * CELL
    table = np.empty((len(middles), k), np.int32)
    points = centres.astype(np.float32)
    for start in range(0, len(middles), 512):  # (512 x 3000) distances at a time
        d = ((middles[start : start + 512, None, :] - points[None]) ** 2).sum(-1)
        table[start : start + 512] = np.argpartition(d, k - 1, axis=1)[:, :k]
    return table.reshape(grid, grid, k)


def _window(patch: int) -> np.ndarray:
    """Separable sine window: with half-patch steps the squared windows sum to one, so overlapping patches of
    independent texture keep its variance."""
    w = np.sin(np.pi * (np.arange(patch) + 0.5) / patch).astype(np.float32)
    return np.outer(w, w)


def _source_centres(
    source: SkinSource, wanted: np.ndarray, rng: np.random.Generator, patch: int
) -> np.ndarray:
    """For each wanted crop position (M, 2): a skin patch centre drawn (seeded) among the ``NEAREST`` centres
    nearest to it, after a seeded jitter; positions off the skin (eyes, mouth) so get varied patches too."""
    jittered = wanted + rng.uniform(-JITTER, JITTER, wanted.shape) * patch
    grid, k = source.nearest.shape[0], source.nearest.shape[2]
    picks = rng.integers(0, k, len(jittered))
    cells = np.clip((jittered // CELL).astype(np.int64), 0, grid - 1)
    return source.centres[source.nearest[cells[:, 1], cells[:, 0], picks]]


def _patches(band: np.ndarray, centres: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """(N, P, P) copies of ``band`` around each (x, y) centre (rows and columns centre + ``offsets``): picked
    from a view of every P x P window, ~5x faster than indexing each pixel; the same values."""
    start = centres[:, ::-1] + offsets[0]  # (y, x) of each patch's first pixel
    size = len(offsets)
    if start.min() < 0 or (start.max(0) + size > np.array(band.shape)).any():  # never for skin centres
        return band[centres[:, 1, None, None] + offsets[None, :, None], centres[:, 0, None, None] + offsets]
    windows = np.lib.stride_tricks.sliding_window_view(band, (size, size))
    return windows[start[:, 0], start[:, 1]]


def quilt(
    source: SkinSource, to_crop: np.ndarray, shape: tuple[int, int], seed: int, patch: int = PATCH
) -> np.ndarray:
    """(H, W) float32 layer of donor skin detail for an image region of ``shape``; ``to_crop`` (2, 3) maps
    region pixels to the donor's crop coordinates. Deterministic in ``seed``."""
    h, w = shape
    step = patch // 2
    window = _window(patch)
    rng = np.random.default_rng(seed)
    out = np.zeros((h + 2 * patch, w + 2 * patch), np.float32)
    half = patch // 2
    offsets = np.arange(-half, patch - half)
    for phase_y in (0, step):
        for phase_x in (0, step):
            ys = np.arange(phase_y - patch, h + patch, patch)
            xs = np.arange(phase_x - patch, w + patch, patch)
            gy, gx = len(ys), len(xs)
            anchors = np.stack(np.meshgrid(xs + half, ys + half), -1).reshape(-1, 2).astype(np.float32)
            wanted = anchors @ to_crop[:, :2].T.astype(np.float32) + to_crop[:, 2].astype(np.float32)
            centres = _source_centres(source, wanted, rng, patch)
            tiles = _patches(source.band, centres, offsets) * window  # (gy*gx, P, P)
            tiles = tiles.reshape(gy, gx, patch, patch).transpose(0, 2, 1, 3).reshape(gy * patch, gx * patch)
            y0, x0 = ys[0] + patch, xs[0] + patch
            region = out[y0 : y0 + gy * patch, x0 : x0 + gx * patch]
            region += tiles[: region.shape[0], : region.shape[1]]
    return out[patch : patch + h, patch : patch + w]
