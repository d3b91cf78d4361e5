"""Evaluate the pixel engines on the Face Research Lab London Set (never committed; read from ../shared).

Two folds, leave-half-out: the donor bank holds half the identities, the other half are anonymized as
patients (neutral + smiling photo = one pairing group), then the halves swap. Prints one row per
engine/preserved region: de-ID (same and other photo), pair consistency, donor leakage, in-region ℓ1 / PSNR
(before and after JPEG q95) / mask IoU / landmark offset, detection rates (MTCNN, dlib HOG) on outputs, the
share that passes fail-closed verification, and seconds per pair. Metrics are on the raw engine output.

    .venv/bin/python bench/eval_pixels.py            # full run (~15 min on 2 busy cores)
    .venv/bin/python bench/eval_pixels.py --limit 4  # quick look

Face Research Lab London Set, L. DeBruine & B. Jones (2017), CC BY 4.0, doi:10.6084/m9.figshare.5047666.v5.
Outputs shown in the contact sheet are modified (anonymized) versions of those photos.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from anonymizer.donors import build_bank, load_bank, save_bank  # noqa: E402
from anonymizer.engines.base import create_engine  # noqa: E402
from anonymizer.engines.surrogate import SurrogateEngine, SurrogateSettings  # noqa: E402
from anonymizer.evaluation.metrics import (  # noqa: E402
    SAME_PERSON,
    donor_leak,
    photo_metrics,
    read_tem,
    template_agreement,
)
from anonymizer.faces.detect import detect_faces  # noqa: E402
from anonymizer.faces.pipeline import run_group  # noqa: E402
from anonymizer.faces.verify import descriptor, distance  # noqa: E402
from anonymizer.plans import Region  # noqa: E402

FACES = REPO.parent / "shared" / "data" / "faces"
CONFIGS: dict[str, tuple[str, tuple[Region, ...]]] = {
    "surrogate": ("surrogate", ()),
    "surrogate+mouth": ("surrogate", (Region.MOUTH,)),
    "surrogate+nose": ("surrogate", (Region.NOSE,)),
    "surrogate+eyes": ("surrogate", (Region.EYES,)),
    "blur+mouth": ("blur", (Region.MOUTH,)),
    "pixelate+mouth": ("pixelate", (Region.MOUTH,)),
    "mask+mouth": ("mask", (Region.MOUTH,)),
}


def seed_for(identity: str) -> int:
    return int.from_bytes(hashlib.sha256(f"eval|{identity}".encode()).digest()[:8], "big")


def identities(folder: Path) -> list[str]:
    ids = sorted({p.stem.split("_")[0] for p in folder.glob("*_03.jpg")})
    return [i for i in ids if (folder / f"{i}_08.jpg").is_file()]


def fold_bank(out: Path, fold: int, bank_ids: list[str], folder: Path) -> Path:
    path = out / f"bank_fold{fold}.npz"
    if not path.is_file():
        files = [folder / f"{i}_{e}.jpg" for i in bank_ids for e in ("03", "08")]
        started = time.perf_counter()
        save_bank(build_bank(folder, files=files), path)
        print(
            f"# built {path.name}: {len(files)} photos in {time.perf_counter() - started:.0f} s", flush=True
        )
    return path


class Subject:
    """One test identity: both photos, detected once, with original descriptors."""

    def __init__(self, folder: Path, identity: str) -> None:
        self.identity = identity
        paths = [folder / f"{identity}_03.jpg", folder / f"{identity}_08.jpg"]
        self.images = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
        self.detections = [detect_faces(img)[:1] for img in self.images]
        self.descriptors = [
            descriptor(img, d[0].landmarks) if d else None
            for img, d in zip(self.images, self.detections, strict=True)
        ]


def evaluate(subject: Subject, engine: object, preserve: tuple[Region, ...], donors: np.ndarray) -> dict:
    """Metrics of one pairing group under one engine configuration."""
    if not all(subject.detections):
        return {"skipped": 1}
    started = time.perf_counter()
    results = run_group(
        subject.images, engine, seed_for(subject.identity), preserve, detections=subject.detections
    )  # type: ignore[arg-type]
    row: dict = {"seconds": time.perf_counter() - started, "outputs": [r.image for r in results]}
    photos = [
        photo_metrics(img, r.image, det[0].landmarks, desc, preserve)
        for img, r, det, desc in zip(
            subject.images, results, subject.detections, subject.descriptors, strict=True
        )
    ]
    row["deid_same"] = [p.id_distance > SAME_PERSON for p in photos]
    row["deid_other"] = [
        distance(photos[i].descriptor, subject.descriptors[1 - i]) > SAME_PERSON for i in range(2)
    ]
    row["pair"] = [distance(photos[0].descriptor, photos[1].descriptor) <= SAME_PERSON]
    row["leak"] = [donor_leak(p.descriptor, donors)[0] for p in photos]
    row["mtcnn"] = [p.mtcnn_found for p in photos]
    row["hog"] = [p.hog_found for p in photos]
    row["verified"] = [r.ok for r in results]
    for key in ("region_l1", "region_psnr", "region_psnr_jpeg", "region_iou", "landmark_offset"):
        row[key] = [getattr(p, key) for p in photos]
    row["id_distance"] = [p.id_distance for p in photos]
    return row


def _rate(values: list) -> str:
    return f"{100 * np.mean(values):.1f}%" if values else "-"


def _mean(values: list, fmt: str = "{:.2f}") -> str:
    vals = [v for v in values if np.isfinite(v)]
    if values and not vals and all(v == float("inf") for v in values):
        return "inf"
    return fmt.format(np.mean(vals)) if vals else "-"


def _min_psnr(values: list) -> str:
    finite = [v for v in values if not np.isnan(v)]
    if not finite:
        return "-"
    low = min(finite)
    return "inf (exact)" if low == float("inf") else f"{low:.1f}"


def print_table(rows: dict[str, list[dict]]) -> None:
    head = (
        "config",
        "n",
        "de-ID same",
        "de-ID other",
        "pair cons.",
        "donor leak",
        "mean dist",
        "ℓ1 in-reg",
        "PSNR min",
        "PSNR jpeg",
        "mask IoU",
        "lm offset",
        "MTCNN",
        "HOG",
        "verified",
        "s/pair",
    )
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for name, items in rows.items():
        ok = [r for r in items if "skipped" not in r]
        col = defaultdict(list)
        for r in ok:
            for k, v in r.items():
                if isinstance(v, list) and k != "outputs":
                    col[k].extend(v)
        cells = (
            name,
            str(len(ok)),
            _rate(col["deid_same"]),
            _rate(col["deid_other"]),
            _rate(col["pair"]),
            _rate(col["leak"]),
            _mean(col["id_distance"]),
            _mean(col["region_l1"], "{:.3f}"),
            _min_psnr(col["region_psnr"]),
            _mean(col["region_psnr_jpeg"], "{:.1f}"),
            _mean(col["region_iou"], "{:.3f}"),
            _mean(col["landmark_offset"], "{:.3f}"),
            _rate(col["mtcnn"]),
            _rate(col["hog"]),
            _rate(col["verified"]),
            f"{np.mean([r['seconds'] for r in ok]):.2f}" if ok else "-",
        )
        print("| " + " | ".join(cells) + " |", flush=True)


def _face_tile(image: np.ndarray, box: tuple[int, int, int, int], size: int = 300) -> np.ndarray:
    import cv2

    x0, y0, x1, y1 = box
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, 0.8 * max(x1 - x0, y1 - y0)
    h, w = image.shape[:2]
    a, b = int(max(0, cx - half)), int(max(0, cy - half))
    c, d = int(min(w, cx + half)), int(min(h, cy + half))
    return cv2.resize(image[b:d, a:c], (size, size), interpolation=cv2.INTER_AREA)


def _overlay(image: np.ndarray, landmarks: np.ndarray, preserve: tuple[Region, ...]) -> np.ndarray:
    import cv2

    from anonymizer.faces.regions import region_mask

    keep = region_mask(landmarks, preserve, image.shape[:2]).astype(np.uint8)
    contours, _ = cv2.findContours(keep, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    out = image.copy()
    cv2.drawContours(out, contours, -1, (0, 255, 0), max(2, image.shape[0] // 400))
    return out


def contact_sheet(subjects: list[Subject], outputs: dict[str, dict[str, list]], path: Path) -> None:
    """Rows: identity. Columns: neutral in, surrogate, surrogate+mouth (region outlined), smiling in, same."""
    rows = []
    for s in subjects:
        if s.identity not in outputs["surrogate"]:
            continue
        tiles = []
        for i in range(2):
            det = s.detections[i][0]
            mouth = outputs["surrogate+mouth"][s.identity][i]
            tiles += [
                _face_tile(s.images[i], det.box),
                _face_tile(outputs["surrogate"][s.identity][i], det.box),
                _face_tile(_overlay(mouth, det.landmarks, (Region.MOUTH,)), det.box),
            ]
        rows.append(np.hstack(tiles))
    if rows:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.vstack(rows)).save(path)
        print(f"# contact sheet: {path}", flush=True)


def template_table(folder: Path, templates: Path, ids: list[str]) -> None:
    scores = defaultdict(list)
    for identity in ids:
        tem = templates / f"{identity}_03.tem"
        if not tem.is_file():
            continue
        image = np.asarray(Image.open(folder / f"{identity}_03.jpg").convert("RGB"))
        faces = detect_faces(image)
        if faces:
            for k, v in template_agreement(faces[0].landmarks, read_tem(str(tem)), image.shape[:2]).items():
                scores[k].append(v)
    if scores:
        print(
            f"# landmarks vs hand templates ({len(scores['mouth_iou'])} neutral photos): mouth-mask IoU "
            f"{np.mean(scores['mouth_iou']):.3f} (min {np.min(scores['mouth_iou']):.3f}), pupil offset "
            f"{np.mean(scores['pupil_offset']):.3f} × inter-ocular",
            flush=True,
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=Path, default=FACES)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "out")
    parser.add_argument("--limit", type=int, default=0, help="test identities per fold (0 = all)")
    parser.add_argument("--configs", nargs="*", default=list(CONFIGS))
    parser.add_argument("--sheet", type=int, default=6, help="identities in the contact sheet")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    folder = args.faces / "london_set"
    if not folder.is_dir():
        print(f"no photos at {folder}; this bench needs ../shared/data/faces", file=sys.stderr)
        return 1
    ids = identities(folder)
    template_table(folder, args.faces / "london_templates", ids)
    rows: dict[str, list[dict]] = {name: [] for name in args.configs}
    outputs: dict[str, dict[str, list]] = {name: {} for name in args.configs}
    sheet_subjects: list[Subject] = []
    for fold, (bank_ids, test_ids) in enumerate(((ids[0::2], ids[1::2]), (ids[1::2], ids[0::2]))):
        bank = load_bank(fold_bank(args.out, fold, bank_ids, folder))
        donors = np.stack([p.descriptor for p in bank.photos])
        engines = {"surrogate": SurrogateEngine(SurrogateSettings(), bank)}
        for test_id in test_ids[: args.limit or None]:
            subject = Subject(folder, test_id)
            for name in args.configs:
                kind, preserve = CONFIGS[name]
                engine = engines.get(kind) or engines.setdefault(kind, create_engine(kind))
                row = evaluate(subject, engine, preserve, donors)
                if name in ("surrogate", "surrogate+mouth") and len(sheet_subjects) < args.sheet:
                    outputs[name][test_id] = row.get("outputs")
                row.pop("outputs", None)
                rows[name].append(row)
            if len(sheet_subjects) < args.sheet and test_id in outputs.get("surrogate+mouth", {}):
                sheet_subjects.append(subject)
            print(f"# fold {fold} {test_id} done", file=sys.stderr, flush=True)
    print_table(rows)
    if "surrogate" in outputs and "surrogate+mouth" in outputs:
        contact_sheet(sheet_subjects, outputs, args.out / "contact_sheet.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
