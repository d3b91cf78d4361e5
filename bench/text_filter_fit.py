"""Fit the text step's pre-OCR filter (`anonymizer/text/filter.py`) on canary photos that no bench scores.

Draws canary photos (`bench/text_pixels.py`'s cases, on seeds the bench never uses, each with its clean twin)
and 12 MP face photos (half with a card and a date stamp), proposes their lines, reads every proposal as the
text step does without the filter, and keeps each proposal's small crop (what the filter sees) with its label:
text when OCR confirmed it (a line the step acts on). The network is fitted (weighted logistic loss on the
maximum over positions and polarities, Adam), and its threshold is set below the lowest score of any text
line, less a margin, so that on the fitting photos no line OCR confirms goes unread. Writes
`anonymizer/text/filter_net.safetensors` and its JSON sidecar (config, threshold, sha256; no pickle) and
prints the resolved config, the threshold and the share of non-text proposals no longer read.

    PYTHONPATH=. .venv/bin/python bench/text_filter_fit.py [--seeds 101 102] [--photos 200] [--twelve-mp 12]
        [--samples FILE.npz] [--dry-run]

``--samples``: where the collected crops and labels are kept (collected when the file is missing; reading
every proposal takes about 4 minutes per 200 photos on an idle 2-core machine, fitting about 5).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from anonymizer.text import filter as text_filter
from anonymizer.text.step import TextSettings

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class FitConfig:
    seeds: tuple[int, ...] = (101, 102)  # canary case seeds (the benches score 7, 11, 23, 31, 47)
    photos: int = 200  # cases per seed (half faces, half clinical backgrounds), each with its clean twin
    twelve_mp: int = 12  # 12 MP face photos, generator seed 5 (the timing bench draws from seed 7)
    widths: tuple[int, ...] = (8, 16, 16, 16)  # the network's channels
    epochs: int = 8
    batch: int = 64  # crops of similar size per batch (padded with their edge pixels)
    lr: float = 3e-3
    text_weight: float = 5.0  # a text line's weight in the loss (missing one is the costly error)
    margin: float = 2.0  # the threshold lies this far (logits) below the lowest text line's score
    torch_seed: int = 0


@dataclass(frozen=True)
class Samples:
    crops: list[np.ndarray]  # uint8, what the filter sees
    scales: np.ndarray  # the crops' scales (a look too coarse for small type is always read)
    text: np.ndarray  # bool: OCR confirmed the line

    def save(self, path: Path) -> None:
        shapes = np.array([c.shape for c in self.crops], np.int64)
        flat = np.concatenate([c.ravel() for c in self.crops])
        np.savez_compressed(path, shapes=shapes, flat=flat, scales=self.scales, text=self.text)

    @staticmethod
    def load(path: Path) -> Samples:
        data = np.load(path, allow_pickle=False)
        ends = np.cumsum([h * w for h, w in data["shapes"]])
        parts = np.split(data["flat"], ends[:-1])
        crops = [p.reshape(s) for p, s in zip(parts, data["shapes"], strict=True)]
        return Samples(crops, data["scales"], data["text"])

    def judged(self, min_cap_px: float) -> np.ndarray:
        """The crops the filter judges (the rest are always read)."""
        return self.scales * min_cap_px >= text_filter.MIN_TYPE_PX


def _collect(image: np.ndarray, into: tuple[list[np.ndarray], list[float], list[bool]]) -> None:
    from anonymizer.text.detect import propose
    from anonymizer.text.step import TextSettings, _read, look

    settings = TextSettings(prefilter=False)  # every proposal read: the labels
    for p in propose(image, settings.detect):
        crop, scale = look(image, p)
        into[0].append(crop)
        into[1].append(scale)
        into[2].append(_read(image, p, None, settings).text)


def collect(config: FitConfig) -> Samples:
    import bench.text_pixels as bench

    into: tuple[list[np.ndarray], list[float], list[bool]] = ([], [], [])
    for seed in config.seeds:
        for case in bench.make_cases(config.photos, seed):
            _collect(case.photo, into)
            _collect(case.clean, into)
    rng = np.random.default_rng(5)
    for i in range(config.twelve_mp):
        _collect(bench._twelve_mp(rng, with_text=i % 2 == 1), into)
    return Samples(into[0], np.array(into[1]), np.array(into[2], bool))


def _batches(samples: Samples, size: int, rng: np.random.Generator):  # type: ignore[no-untyped-def]
    """(indices, (n, 1, h, w) tensor) of crops of similar size, padded with their edge pixels."""
    import torch

    order = sorted(range(len(samples.crops)), key=lambda i: samples.crops[i].shape)
    groups = [order[i : i + size] for i in range(0, len(order), size)]
    for k in rng.permutation(len(groups)):
        inputs = [text_filter.as_input(samples.crops[i]) for i in groups[k]]
        h, w = max(x.shape[0] for x in inputs), max(x.shape[1] for x in inputs)
        padded = [np.pad(x, ((0, h - x.shape[0]), (0, w - x.shape[1])), mode="edge") for x in inputs]
        yield groups[k], torch.from_numpy(np.stack(padded))[:, None]


def fit(samples: Samples, config: FitConfig):  # type: ignore[no-untyped-def]
    import torch

    torch.manual_seed(config.torch_seed)
    torch.set_num_threads(1)  # on a shared 2-core machine two OpenMP threads mostly wait on each other
    rng = np.random.default_rng(config.torch_seed)
    net = text_filter.build(config.widths)
    opt = torch.optim.Adam(net.parameters(), lr=config.lr)
    labels = torch.from_numpy(samples.text.astype(np.float32))
    for epoch in range(config.epochs):
        total = 0.0
        for index, x in _batches(samples, config.batch, rng):
            y = labels[index]
            weight = torch.where(y > 0, config.text_weight, 1.0)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(text_filter.scores(net, x), y, weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(index)
        print(f"epoch {epoch}: loss {total / len(samples.crops):.4f}", flush=True)
    return net.eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=list(FitConfig.seeds))
    ap.add_argument("--photos", type=int, default=FitConfig.photos)
    ap.add_argument("--twelve-mp", type=int, default=FitConfig.twelve_mp)
    ap.add_argument("--samples", type=Path, default=None, help="collected crops and labels (.npz), reused")
    ap.add_argument("--dry-run", action="store_true", help="print the resolved config and stop")
    args = ap.parse_args()
    config = FitConfig(seeds=tuple(args.seeds), photos=args.photos, twelve_mp=args.twelve_mp)
    print(json.dumps(asdict(config)))
    if args.dry_run:
        return
    if args.samples is not None and args.samples.is_file():
        samples = Samples.load(args.samples)
    else:
        samples = collect(config)
        if args.samples is not None:
            samples.save(args.samples)
    net = fit(samples, config)
    scores = np.array([text_filter.TextFilter(net, 0.0).score(c) for c in samples.crops])
    judged = samples.judged(TextSettings().detect.min_cap_px)
    threshold = float(scores[samples.text & judged].min()) - config.margin
    unread = (scores < threshold) & judged
    fitted_on = {**asdict(config), "proposals": len(scores), "text_lines": int(samples.text.sum())}
    digest = text_filter.save(text_filter.WEIGHTS, net, config.widths, threshold, fitted_on)
    print(f"proposals {len(scores)}, text lines {int(samples.text.sum())}, threshold {threshold:.3f}; "
          f"non-text unread {int((unread & ~samples.text).sum())} / {int((~samples.text).sum())} "
          f"({(unread & ~samples.text).sum() / max(1, (~samples.text).sum()):.1%}); sha256 {digest[:12]}")


if __name__ == "__main__":
    main()
