"""Per-photo timing of the pixel stage on a 12 MP clinical-style photo (4000 x 3000, JPEG q95 4:2:2).

The photo is a London Set portrait scaled onto a 12 MP canvas (face about 1,000 px wide). Prints the median of
``--runs`` end-to-end ``anonymize_group`` calls (decode, detect, anonymize, verify, encode) and a per-step
breakdown from the same functions called one by one.

    .venv/bin/python bench/pixel_timing.py [--bank bench/out/bank_fold0.npz] [--engine blur]
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from anonymizer import codec, pixel_stage  # noqa: E402
from anonymizer.faces.detect import detect_faces  # noqa: E402
from anonymizer.faces.pipeline import run_group  # noqa: E402
from anonymizer.outcomes import Ok  # noqa: E402
from anonymizer.photo_dicom import PhotoContext, jpeg_to_dataset  # noqa: E402
from anonymizer.plans import PixelPlan, Region  # noqa: E402

PHOTO = REPO.parent / "shared" / "data" / "faces" / "london_set" / "017_03.jpg"


def twelve_megapixel(path: Path) -> bytes:
    face = np.asarray(Image.open(path).convert("RGB"))
    big = cv2.resize(face, (2900, 2900), interpolation=cv2.INTER_CUBIC)
    canvas = cv2.copyMakeBorder(big, 50, 50, 550, 550, cv2.BORDER_REFLECT)
    buf = io.BytesIO()
    Image.fromarray(canvas).save(buf, format="JPEG", quality=95, subsampling=1)
    return buf.getvalue()


def _timed(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bank", type=Path, default=REPO / "bench" / "out" / "bank_fold0.npz")
    parser.add_argument("--engine", default="surrogate")
    parser.add_argument("--preserve", nargs="*", default=["mouth"])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=10, help="identity seeds timed once each")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not PHOTO.is_file():
        print(f"needs {PHOTO}", file=sys.stderr)
        return 1
    pixel_stage.configure(pixel_stage.PixelSettings(donor_bank=args.bank))
    plan = PixelPlan(engine=args.engine, preserve=tuple(Region(r) for r in args.preserve))
    ds = jpeg_to_dataset(twelve_megapixel(PHOTO), PhotoContext("TIMING"))
    print(
        f"photo {ds.Columns}x{ds.Rows} ({ds.Columns * ds.Rows / 1e6:.1f} MP), engine {plan.engine}, "
        f"preserve {[str(r) for r in plan.preserve]}, torch threads {args.threads}"
    )
    (outcome,) = pixel_stage.anonymize_group([ds], plan, 42)  # warm-up: loads models and the bank
    assert isinstance(outcome, Ok), outcome
    totals = [_timed(pixel_stage.anonymize_group, [ds], plan, 42)[1] for _ in range(args.runs)]
    print(
        f"end to end (anonymize_group): median {np.median(totals):.3f} s, min {min(totals):.3f} s "
        f"over {args.runs} runs"
    )
    engine = pixel_stage._engine(plan.engine, {})
    # The surrogate's cost depends on how many strength rungs a synthetic identity needs, so time several.
    by_seed = [_timed(pixel_stage.anonymize_group, [ds], plan, seed)[1] for seed in range(args.seeds)]
    if by_seed:
        print(
            f"end to end over {args.seeds} identity seeds: median {np.median(by_seed):.3f} s, "
            f"max {max(by_seed):.3f} s ({' '.join(f'{t:.2f}' for t in by_seed)})"
        )
    steps: dict[str, list[float]] = {k: [] for k in ("decode", "detect", "anonymize+paste+verify", "encode")}
    for _ in range(args.runs):
        frames, t = _timed(codec.decode, ds)
        steps["decode"].append(t)
        dets, t = _timed(lambda fr: [detect_faces(f) for f in fr], frames)
        steps["detect"].append(t)
        results, t = _timed(
            run_group, frames, engine, 42, plan.preserve, pixel_stage._settings.pipeline, detections=dets
        )
        steps["anonymize+paste+verify"].append(t)
        _, t = _timed(codec.encode, ds.copy(), [r.image for r in results], plan.jpeg_quality)
        steps["encode"].append(t)
    for name, values in steps.items():
        print(f"  {name:<24} median {np.median(values):.3f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
