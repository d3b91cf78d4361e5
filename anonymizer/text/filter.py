"""A cheap look at each proposal before OCR: lines surely not text (hair, eyebrows, fabric) go unread.

On a 12 MP face photo the detector proposes 30-90 lines, nearly all of them hair, and tesseract reads each
(2-50 ms, re-reads included). Here each proposal is first straightened at a small size (glyphs about 16 px,
at most 2,500 pixels: the same crop as OCR's, smaller) and scored by a tiny fully convolutional network: four
3x3 convolutions (8, 16, 16, 16 channels, 2x poolings between them, ~6,000 weights) whose text score is the
maximum over all positions, both polarities and two scales (type anywhere in the crop, light or dark, counts).
Scoring takes about 0.5 ms of CPU per proposal (:func:`one_score`; 0.7-0.8 through :func:`scores`).
A proposal scoring below the threshold is passed on unread, as not text. It still counts as an unconfirmed
proposal: it is filled when it lies beside confirmed text (a card's other lines), as an unconfirmed read
line is; on a photo whose text the filter lets through, the outcome is the same as without it.

The weights are fitted by ``bench/text_filter_fit.py`` on canary photos that no bench scores; the threshold
lies below the lowest score of any line OCR confirmed there, less a margin. They ship beside this module
(``filter_net.safetensors`` with its JSON sidecar: constructor config, threshold, sha256); nothing is
downloaded. A missing or altered file raises :class:`FilterUnavailable`, an :class:`OcrUnavailable`: the text
check cannot run and the photo is quarantined (``ocr-unavailable``).
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from anonymizer.text.ocr import OcrUnavailable

WEIGHTS = Path(__file__).with_name("filter_net.safetensors")
GLYPH_PX = 16  # the look's scale: glyphs about this tall ...
MAX_PIXELS = 2500  # ... in a crop no larger than this
MIN_TYPE_PX = 2.4  # a look in which the smallest type found would be smaller is too coarse to judge
FORMAT = "vera-text-filter/1"


class FilterUnavailable(OcrUnavailable):
    """The filter's weights are missing or do not match their sidecar: the text check cannot run."""


def build(widths: tuple[int, ...] = (8, 16, 16, 16)) -> Any:
    """The network: (n, 1, h, w) crops → (n, 1, h/2^k, w/2^k) text logits; a 3x3 convolution per width, a
    2x pooling between them (edges, strokes, glyph parts, glyphs), then a 1x1 to one logit per position."""
    from torch import nn

    layers: list[Any] = []
    channels = 1
    for i, width in enumerate(widths):
        layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU()]
        if i < len(widths) - 1:
            layers.append(nn.MaxPool2d(2))
        channels = width
    return nn.Sequential(*layers, nn.Conv2d(channels, 1, 1))


def scores(net: Any, crops: Any) -> Any:
    """(n,) text logits of a batch (n, 1, h, w): the maximum over positions, both polarities and two scales
    (the crop and its half: type much larger than its proposal's glyph estimate, e.g. a piece of a bold
    word, fills a crop and is only seen whole at half size)."""
    import torch

    first, rest = net[0], net[1:]

    def best(x: Any) -> Any:
        # the first convolution is linear: the inverted crop's is its negative (plus the bias), once computed
        edges = torch.nn.functional.conv2d(x, first.weight, None, padding=1)
        bias = first.bias.view(1, -1, 1, 1)
        return rest(torch.cat([edges + bias, bias - edges])).amax(dim=(1, 2, 3)).view(2, -1).amax(0)

    if min(crops.shape[2:]) < 16:
        return best(crops)
    return torch.maximum(best(crops), best(torch.nn.functional.avg_pool2d(crops, 2)))


def one_score(net: Any, x: Any, enough: float = float("inf")) -> float:
    """:func:`scores` of one crop (1, 1, h, w), the same number (to float rounding) in about 40 % of the
    time. Both polarities lie side by side in one batch of one (PyTorch convolves a batch of one natively;
    a batch of two goes to oneDNN, which builds a new kernel for every crop size: ~0.2 ms a convolution),
    and the 2x poolings are four strided maxima (``max_pool2d`` also records indices: ~65 µs a call).
    Inference only (the fit trains :func:`scores`). ``enough``: a full-scale logit of at least this is
    returned without the half-scale look (the score is their maximum: whether it reaches ``enough`` is the
    same either way)."""
    import torch

    best = _both_polarities(net, x)
    if min(x.shape[2:]) < 16 or best >= enough:
        return best
    return max(best, _both_polarities(net, torch.nn.functional.avg_pool2d(x, 2)))


def _both_polarities(net: Any, x: Any) -> float:
    """The maximum logit over a crop and its inverse laid out as [crop | gap | inverse]: the inverse starts
    on the poolings' grid, far enough right that a column of zeros parts the two at every level, and all
    outside the two is zeroed before each convolution, as its zero padding would be: each position's logit
    is the one it has alone. (ReLUs and the zeroing run in place, on column masks made once per size: the
    same values with less of PyTorch's per-call work.)"""
    import torch

    first, rest, grid = _layers(net)
    w = x.shape[3]
    start = grid * (w // grid + 1)
    edges = torch.nn.functional.conv2d(x, first.weight, None, padding=1)
    bias = first.bias.view(1, -1, 1, 1)
    gap = edges.new_zeros((*edges.shape[:3], start - w))
    a, level = torch.cat([edges + bias, gap, bias - edges], dim=3), 1
    for layer, kind in rest:
        if kind == "pool":
            level *= 2
            a = _pool2(a)
            a.mul_(_two_columns(a.shape[3], w // level, start // level))
        elif kind == "relu":
            torch.relu_(a)
        else:
            a = layer(a)
    inverse = start // level
    return max(float(a[..., : w // level].max()), float(a[..., inverse : inverse + w // level].max()))


@lru_cache(maxsize=8)
def _layers(net: Any) -> tuple[Any, tuple[tuple[Any, str], ...], int]:
    """(the first convolution, the other layers each with its kind, the poolings' grid) of a network."""
    from torch import nn

    kinds = tuple(
        (layer, "pool" if isinstance(layer, nn.MaxPool2d) else "relu" if isinstance(layer, nn.ReLU) else "")
        for layer in net
    )
    return net[0], kinds[1:], 2 ** sum(kind == "pool" for _, kind in kinds)


@lru_cache(maxsize=1024)
def _two_columns(total: int, width: int, start: int) -> Any:
    """Bool (total,): columns [0, width) and [start, start + width), the two crops' (all else is zeroed)."""
    import torch

    column = torch.arange(total)
    return (column < width) | ((column >= start) & (column < start + width))


def _pool2(x: Any) -> Any:
    """``MaxPool2d(2)``, exactly (an odd last row or column is dropped, as there)."""
    import torch

    h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    return torch.maximum(torch.maximum(x[..., 0:h:2, 0:w:2], x[..., 0:h:2, 1:w:2]),
                         torch.maximum(x[..., 1:h:2, 0:w:2], x[..., 1:h:2, 1:w:2]))


def as_input(crop: np.ndarray) -> np.ndarray:
    """A uint8 crop as the network's input: at least 8x8 (edge pixels repeated), zero mean, unit contrast
    (faint grey type on grey counts as black on white does; flat paper is not amplified beyond 10 levels)."""
    h, w = crop.shape
    if h < 8 or w < 8:
        crop = np.pad(crop, ((0, max(0, 8 - h)), (0, max(0, 8 - w))), mode="edge")
    x = crop.astype(np.float32)
    return (x - x.mean()) / max(float(x.std()), 10.0)


@dataclass(frozen=True)
class TextFilter:
    net: Any  # torch module, eval mode
    threshold: float  # proposals scoring below are not read

    def score(self, crop: np.ndarray, enough: float = float("inf")) -> float:
        import torch

        from anonymizer.faces.models import one_torch_thread

        x = torch.from_numpy(as_input(crop))[None, None]
        with torch.inference_mode(), one_torch_thread():
            return one_score(self.net, x, enough)

    def passes(self, crop: np.ndarray) -> bool:
        """Worth reading: not surely non-text (a crop that passes at full scale needs no half-scale look)."""
        return self.score(crop, self.threshold) >= self.threshold


_lock = threading.Lock()
_loaded: dict[Path, TextFilter] = {}


def load(path: Path = WEIGHTS) -> TextFilter:
    """The fitted filter, loaded once per process; its sha256 and config are checked first."""
    with _lock:
        if path not in _loaded:
            _loaded[path] = _read(path)
        return _loaded[path]


def _read(path: Path) -> TextFilter:
    from safetensors.torch import load_file

    meta_path = path.with_suffix(".json")
    if not path.is_file() or not meta_path.is_file():
        raise FilterUnavailable(f"text filter weights not found: {path.name} and its .json")
    meta = json.loads(meta_path.read_text())
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if meta.get("format") != FORMAT or digest != meta.get("sha256"):
        raise FilterUnavailable(f"{path.name}: format or sha256 does not match its sidecar")
    net = build(tuple(meta["config"]["widths"]))
    try:
        net.load_state_dict(load_file(str(path)), strict=True)
    except RuntimeError as exc:
        raise FilterUnavailable(f"{path.name}: weights do not fit the configured network") from exc
    return TextFilter(net.eval(), float(meta["threshold"]))


def save(
    path: Path, net: Any, widths: tuple[int, ...], threshold: float, fitted_on: dict[str, Any]
) -> str:
    """Write weights + sidecar (config, threshold, what they were fitted on, sha256); returns the sha256."""
    from safetensors.torch import save_file

    save_file({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}, str(path))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    meta = {"format": FORMAT, "config": {"widths": list(widths)}, "threshold": threshold,
            "fitted_on": fitted_on, "sha256": digest}
    path.with_suffix(".json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    return digest
