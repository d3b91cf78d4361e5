"""Why dlib's HOG box moves between an original and its surrogate output (issue 11, fidelity).

For each test photo of ``eval_pixels``' draw (``--subset`` / ``--ids``) and each setting, runs the engine (or
reads outputs saved by an earlier run with ``--load``), then runs dlib's frontal detector on the original and
the output at the bench's scale (long side 480, one upsample) with a low threshold, and prints per photo: the
box nearest the face (x0, y0, side), its score and sub-detector, the IoU, and the best score the output gets
at the original's box (within 8 px) and the original at the output's.

    PYTHONPATH=$PWD .venv/bin/python bench/box_study.py --subset 4 --settings eyes --save /tmp/box/eyes
    PYTHONPATH=$PWD .venv/bin/python bench/box_study.py --subset 4 --settings eyes --load /tmp/box/eyes
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import eval_pixels as ev  # noqa: E402
import face_quality as fq  # noqa: E402

from anonymizer.donors import load_bank  # noqa: E402
from anonymizer.engines.surrogate import SurrogateEngine, SurrogateSettings  # noqa: E402
from anonymizer.faces.detect import downscale  # noqa: E402
from anonymizer.faces.models import dlib_models  # noqa: E402
from anonymizer.faces.pipeline import run_group  # noqa: E402

Box = tuple[int, int, int, int]
ENGINES: dict[int, SurrogateEngine] = {}


def candidates(image: np.ndarray, threshold: float = -0.6) -> list[tuple[Box, float, int]]:
    """Every HOG detection above ``threshold`` on the bench's downscaled copy: (box, score, sub-detector)."""
    small, _ = downscale(image, 480)
    rects, scores, index = dlib_models().hog.run(np.ascontiguousarray(small), 1, threshold)
    return [
        ((r.left(), r.top(), r.right(), r.bottom()), float(s), int(i))
        for r, s, i in zip(rects, scores, index, strict=True)
    ]


def _nearest(found: list[tuple[Box, float, int]], centre: np.ndarray) -> tuple[Box, float, int] | None:
    if not found:
        return None
    return min(
        found,
        key=lambda f: np.hypot((f[0][0] + f[0][2]) / 2 - centre[0], (f[0][1] + f[0][3]) / 2 - centre[1]),
    )


def describe(original: np.ndarray, output: np.ndarray, landmarks: np.ndarray) -> tuple[float, str]:
    small_scale = downscale(original, 480)[1]
    centre = landmarks.mean(0) * small_scale
    a, b = candidates(original), candidates(output)
    top_a = _nearest([f for f in a if f[1] >= 0], centre)
    top_b = _nearest([f for f in b if f[1] >= 0], centre)
    iou = fq.box_iou(top_a[0] if top_a else None, top_b[0] if top_b else None)

    def fmt(f: tuple[Box, float, int] | None) -> str:
        if f is None:
            return "none"
        (x0, y0, x1, _), s, i = f
        return f"({x0},{y0},{x1 - x0}) {s:+.2f} d{i}"

    def at(found: list[tuple[Box, float, int]], box: Box | None) -> str:
        near = [f for f in found if box and max(abs(p - q) for p, q in zip(f[0], box, strict=True)) <= 8]
        return f"{max(f[1] for f in near):+.2f}" if near else "<-0.6"

    line = (
        f"orig {fmt(top_a)} out {fmt(top_b)} IoU {iou:.2f} | out@origbox {at(b, top_a[0] if top_a else None)}"
        f" orig@outbox {at(a, top_b[0] if top_b else None)}"
    )
    scales = fq.box_iou_sizes(original, output, landmarks.mean(0))
    SCALES.append(scales)
    return iou, f"{line} | photo {' '.join(f'{v:.2f}' for v in scales)}"


SCALES: list[list[float]] = []  # per photo: fq.box_iou_sizes, for the summary line


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subset", type=int, default=4)
    parser.add_argument("--ids", nargs="*", default=[])
    parser.add_argument("--settings", nargs="*", default=["eyes"], choices=ev.CONFIGS)
    parser.add_argument("--save", type=Path, help="folder for the outputs (PNG) of this run")
    parser.add_argument(
        "--load", type=Path, help="read outputs saved by --save instead of running the engine"
    )
    parser.add_argument("--engine-setting", nargs="*", default=[], metavar="NAME=VALUE")
    args = parser.parse_args()
    folder = ev.FACES / "london_set"
    ids = ev.identities(folder)
    originals = ev.Originals(folder, ids, REPO / "bench" / "out" / "originals.npz")
    folds = [(ids[0::2], ids[1::2]), (ids[1::2], ids[0::2])]
    for name in args.settings:
        _, preserve = ev.CONFIGS[name]
        ious = []
        for fold, (bank_ids, test_ids) in enumerate(folds):
            chosen = [i for i in test_ids if i in args.ids] if args.ids else test_ids[: args.subset]
            for test_id in chosen:
                subject = ev.Subject(originals, test_id)
                outputs = _outputs(args, name, fold, bank_ids, folder, subject, preserve)
                for e, image, out, det in zip(
                    ev.EXPRESSIONS, subject.images, outputs, subject.detections, strict=True
                ):
                    iou, line = describe(image, out, det[0].landmarks)
                    ious.append(iou)
                    print(f"{name} {test_id}_{e} {line}", flush=True)
        print(f"# {name}: mean IoU {np.mean(ious):.3f} over {len(ious)} photos", flush=True)
        per_scale = " ".join(f"{v:.3f}" for v in np.mean(SCALES, axis=0))
        print(f"# {name}: mean IoU per photo size (480 px first) {per_scale}; all {np.mean(SCALES):.3f}")
        SCALES.clear()
    return 0


def _outputs(args, name, fold, bank_ids, folder, subject, preserve) -> list[np.ndarray]:  # type: ignore[no-untyped-def]
    if args.load:
        return [
            np.asarray(Image.open(args.load / name / f"{subject.identity}_{e}.png")) for e in ev.EXPRESSIONS
        ]
    if fold not in ENGINES:
        bank = load_bank(ev.fold_bank(REPO / "bench" / "out", fold, bank_ids, folder))
        ENGINES[fold] = SurrogateEngine(SurrogateSettings(**ev.engine_overrides(args.engine_setting)), bank)
    engine = ENGINES[fold]
    results = run_group(
        subject.images, engine, ev.seed_for(subject.identity), preserve, detections=subject.detections
    )
    outputs = [r.image for r in results]
    verified = " ".join(r.reason or "ok" for r in results)
    print(f"# {name} {subject.identity} rung {engine.last_level} verification {verified}", flush=True)
    if args.save:
        (args.save / name).mkdir(parents=True, exist_ok=True)
        for e, out in zip(ev.EXPRESSIONS, outputs, strict=True):
            Image.fromarray(out).save(args.save / name / f"{subject.identity}_{e}.png")
    return outputs


if __name__ == "__main__":
    raise SystemExit(main())
