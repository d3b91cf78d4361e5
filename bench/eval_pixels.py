"""Evaluate the pixel engines on the Face Research Lab London Set (never committed; read from ../shared).

Two folds, leave-half-out: the donor bank holds half the identities, the other half are anonymized as
patients (neutral + smiling photo = one pairing group), then the halves swap. ``--folds 39`` is
leave-one-out instead: each patient meets the whole set's bank less themself (38 identities, like the shipped
39-identity bank), and every patient shares nearly one pool, as in the gateway. Two tables, one row per
setting (engine + preserved region):
- privacy and yield: the share forwarded (passes fail-closed verification), de-ID (same and other photo),
  pair consistency, donor leak next to its floor (test originals that match a donor: unrelated real faces),
  the linkage attack (rank of the patient's own original among every identity's originals; chance in the
  header), collisions (pairs of different patients' outputs under 0.6; real faces' rate next to it), seconds;
- fidelity: skin sharpness output ÷ original (median / 10th percentile), seam (gradient energy along the
  paste boundary, output ÷ original), expression / sex kept and apparent-age difference by leave-identity-out
  probes (their own accuracy on originals in the header), dlib / MTCNN box IoU, preserved-region PSNR raw
  and after the gateway's codec, and the share of JPEG blocks the codec leaves bit-identical.
Contact sheets (original | every setting, neutral and smiling; one identity per ethnicity and sex first) go
to bench/out/sheets/.

    .venv/bin/python bench/eval_pixels.py                                     # full run (~25 min, 2 cores)
    .venv/bin/python bench/eval_pixels.py --subset 3 --settings nothing nose  # a ~5 min look

Face Research Lab London Set, L. DeBruine & B. Jones (2017), CC BY 4.0, doi:10.6084/m9.figshare.5047666.v5.
Outputs shown in the contact sheet are modified (anonymized) versions of those photos.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import sys
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import face_quality as fq  # noqa: E402

from anonymizer.donors import build_bank, load_bank, save_bank  # noqa: E402
from anonymizer.engines.base import create_engine  # noqa: E402
from anonymizer.engines.surrogate import Strength, SurrogateEngine, SurrogateSettings  # noqa: E402
from anonymizer.engines.surrogate_settings import KEPT_OVERRIDES  # noqa: E402
from anonymizer.evaluation.metrics import SAME_PERSON, donor_leak, photo_metrics, psnr  # noqa: E402
from anonymizer.faces.detect import DetectedFace, detect_faces  # noqa: E402
from anonymizer.faces.pipeline import run_group  # noqa: E402
from anonymizer.faces.regions import region_mask  # noqa: E402
from anonymizer.faces.verify import descriptor, distance  # noqa: E402
from anonymizer.issued import MemoryIssued  # noqa: E402
from anonymizer.plans import Region  # noqa: E402

FACES = REPO.parent / "shared" / "data" / "faces"
CONFIGS: dict[str, tuple[str, tuple[Region, ...]]] = {
    "nothing": ("surrogate", ()),
    "mouth": ("surrogate", (Region.MOUTH,)),
    "nose": ("surrogate", (Region.NOSE,)),
    "eyes": ("surrogate", (Region.EYES,)),
    "blur+mouth": ("blur", (Region.MOUTH,)),
    "pixelate+mouth": ("pixelate", (Region.MOUTH,)),
    "mask+mouth": ("mask", (Region.MOUTH,)),
}
DEFAULT_SETTINGS = ("nothing", "mouth", "nose", "eyes")
EXPRESSIONS = ("03", "08")  # neutral, smiling


def seed_for(identity: str) -> int:
    return int.from_bytes(hashlib.sha256(f"eval|{identity}".encode()).digest()[:8], "big")


def identities(folder: Path) -> list[str]:
    ids = sorted({p.stem.split("_")[0] for p in folder.glob("*_03.jpg")})
    return [i for i in ids if (folder / f"{i}_08.jpg").is_file()]


def fold_bank(out: Path, fold: int | str, bank_ids: list[str], folder: Path) -> Path:
    path = out / f"bank_fold{fold}.npz"
    if not path.is_file():
        files = [folder / f"{i}_{e}.jpg" for i in bank_ids for e in EXPRESSIONS]
        started = time.perf_counter()
        save_bank(build_bank(folder, files=files), path)
        print(
            f"# built {path.name}: {len(files)} photos in {time.perf_counter() - started:.0f} s", flush=True
        )
    return path


def split_folds(ids: list[str], k: int) -> list[tuple[list[str], list[str]]]:
    """(bank identities, test identities) per fold. k = 2 is the historical split (alternate identities);
    k = len(ids) is leave-one-out: every patient meets the whole set's bank less themself, as a patient
    meets the shipped bank (all 39 identities) in the gateway."""
    if k == 2:
        return [(ids[0::2], ids[1::2]), (ids[1::2], ids[0::2])]
    parts = [ids[f::k] for f in range(k)]
    return [([i for i in ids if i not in part], part) for part in parts if part]


def fold_banks(out: Path, folds: list[tuple[list[str], list[str]]], folder: Path) -> list:
    """One bank per fold: for two folds the cached fold banks, else the whole set's bank less the fold's
    test identities (the same reference shape for every fold, as the shipped bank)."""
    if len(folds) == 2:
        return [load_bank(fold_bank(out, f, bank_ids, folder)) for f, (bank_ids, _) in enumerate(folds)]
    everyone = sorted({i for bank_ids, test_ids in folds for i in (*bank_ids, *test_ids)})
    whole = load_bank(fold_bank(out, "_all", everyone, folder))
    return [whole.without(bank_labels(whole.identities(), test_ids)) for _, test_ids in folds]


def bank_labels(labels: list[str], ids: list[str]) -> list[str]:
    """The bank's identity labels of the test ``ids``: the bank names identities by the manifest
    ("london_001"), the folds by file stem ("001"). Without this mapping ``without`` dropped nobody and
    every leave-one-out patient met a bank holding themself. Raises when an id has no label."""
    found = [label for label in labels if label.rsplit("_", 1)[-1] in ids or label in ids]
    missing = set(ids) - {label.rsplit("_", 1)[-1] for label in found} - set(found)
    if missing:
        raise ValueError(f"identities not in the bank: {sorted(missing)}")
    return found


def read_manifest(faces: Path) -> dict[str, dict[str, str]]:
    """identity number ('001') → self-reported sex, age, ethnicity."""
    rows: dict[str, dict[str, str]] = {}
    path = faces / "manifest.csv"
    if path.is_file():
        with path.open(newline="") as fh:
            for row in csv.DictReader(fh):
                if row["file"].startswith("london_set/"):
                    rows[Path(row["file"]).stem.split("_")[0]] = row
    return rows


class Originals:
    """Detections and descriptors of every photo of the set, computed once and cached in bench/out."""

    def __init__(self, folder: Path, ids: list[str], cache: Path) -> None:
        self.folder = folder
        if cache.is_file():
            with np.load(cache) as z:
                data = {k: z[k] for k in z.files}
            if list(data["ids"]) == ids:
                self._set(ids, data)
                return
        data = {"ids": np.array(ids), "landmarks": [], "boxes": [], "descriptors": []}
        for identity in ids:
            for e in EXPRESSIONS:
                image = np.asarray(Image.open(folder / f"{identity}_{e}.jpg").convert("RGB"))
                face = detect_faces(image)[0]
                data["landmarks"].append(face.landmarks)
                data["boxes"].append(face.box)
                data["descriptors"].append(descriptor(image, face.landmarks))
        data = {k: np.asarray(v) for k, v in data.items()}
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, **data)
        self._set(ids, data)

    def _set(self, ids: list[str], data: dict[str, np.ndarray]) -> None:
        self.index = {(i, e): 2 * n + k for n, i in enumerate(ids) for k, e in enumerate(EXPRESSIONS)}
        self.landmarks, self.boxes, self.descriptors = data["landmarks"], data["boxes"], data["descriptors"]

    def detection(self, identity: str, e: str) -> DetectedFace:
        n = self.index[(identity, e)]
        box = tuple(int(v) for v in self.boxes[n])
        return DetectedFace(box, 1.0, self.landmarks[n].astype(np.float32), "mtcnn")  # type: ignore[arg-type]

    def gallery(self) -> dict[str, list[np.ndarray]]:
        out: dict[str, list[np.ndarray]] = defaultdict(list)
        for (identity, _), n in self.index.items():
            out[identity].append(self.descriptors[n])
        return out


class Subject:
    """One test identity: both photos (pixels and original JPEG bytes), detections from the cache."""

    def __init__(self, originals: Originals, identity: str) -> None:
        self.identity = identity
        paths = [originals.folder / f"{identity}_{e}.jpg" for e in EXPRESSIONS]
        self.jpeg = [p.read_bytes() for p in paths]
        self.images = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
        self.detections = [[originals.detection(identity, e)] for e in EXPRESSIONS]
        self.descriptors = [originals.descriptors[originals.index[(identity, e)]] for e in EXPRESSIONS]


def self_reported_sex(row: dict[str, str]) -> str:
    """The sex ("F", "M", or "" when not reported) of a manifest row."""
    return {"female": "F", "male": "M"}.get(row.get("gender_self_reported", "").lower(), "")


def build_probes(originals: Originals, ids: list[str], manifest: dict[str, dict[str, str]]) -> fq.Probes:
    reference = np.mean(originals.landmarks, axis=0)
    samples = []
    for identity in ids:
        row = manifest.get(identity, {})
        sex = self_reported_sex(row)
        try:
            age = float(row.get("age_self_reported", "nan"))
        except ValueError:
            age = float("nan")
        for e in EXPRESSIONS:
            n = originals.index[(identity, e)]
            geo = fq.geometry(originals.landmarks[n], reference)
            samples.append(fq.Sample(identity, originals.descriptors[n], geo, e == "08", sex, age))
    probes = fq.Probes(samples)
    probes.reference = reference  # type: ignore[attr-defined]
    return probes


def evaluate(
    subject: Subject,
    engine: object,
    preserve: tuple[Region, ...],
    donors: np.ndarray,
    probes: fq.Probes,
    codec_checks: bool,
) -> dict:
    """Metrics of one pairing group under one engine configuration."""
    started = time.perf_counter()
    results = run_group(
        subject.images, engine, seed_for(subject.identity), preserve, detections=subject.detections
    )  # type: ignore[arg-type]
    row: dict = {"seconds": time.perf_counter() - started, "outputs": [r.image for r in results]}
    if TRACE:
        trace(subject.identity, engine, preserve, results)
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
    for key in ("region_l1", "region_psnr", "region_iou", "landmark_offset", "id_distance"):
        row[key] = [getattr(p, key) for p in photos]
    row["out_desc"] = [(subject.identity, p.descriptor) for p in photos]
    # sex by the bench's probe on the original vs on the output (descriptors only: privacy-only runs too)
    row["sex_kept"] = [
        probes.call("sex", subject.identity, before) == probes.call("sex", subject.identity, p.descriptor)
        for before, p in zip(subject.descriptors, photos, strict=True)
    ]
    kept = "+".join(r.value for r in preserve) or "nothing"
    if TRACE:  # the bench probe's reading per photo, original > output (miss_report skips these lines)
        calls = [
            f"{probes.call('sex', subject.identity, b)}>{probes.call('sex', subject.identity, p.descriptor)}"
            for b, p in zip(subject.descriptors, photos, strict=True)
        ]
        print(f"# sex {kept} {subject.identity} {' '.join(calls)}", file=sys.stderr)
    if not PRIVACY_ONLY:
        fidelity(row, subject, row["outputs"], photos, probes, kept)
    if codec_checks and not PRIVACY_ONLY:
        codec_metrics(row, subject, results, preserve)
    return row


TRACE = False
SAVE_OUTPUTS: Path | None = None  # --save-outputs: every output as PNG (with --trace; for box probes)
PRIVACY_ONLY = False


def trace(identity: str, engine: object, preserve: tuple[Region, ...], results: list) -> None:
    """Per group (stderr): each photo's verification outcome and the engine's rungs (donor set, tier, rung,
    nearest distance to the patient, reference identities nearer than the patient, donors matched)."""
    kept = "+".join(r.value for r in preserve) or "nothing"
    checks = [
        f"{r.reason or 'ok'}:{r.faces[0].check.distance:.3f}" if r.faces and r.faces[0].check else r.reason
        for r in results
    ]
    print(f"# trace {kept} {identity} {' '.join(checks)}", file=sys.stderr)
    avoid = getattr(engine, "last_avoid", "")
    if avoid:  # the issued-identities check (--issued): free / clear / fallback (miss_report skips it)
        print(f"# issued {kept} {identity} {avoid}", file=sys.stderr)
    pick = getattr(engine, "last_pick", "")
    if pick:  # spread_pick: further steps that passed / tried, and whether one replaced the rung
        print(f"# pick {kept} {identity} {pick}", file=sys.stderr)
    sets: dict[int, int] = {}
    for seed, tier, level, away, closer, donors in getattr(engine, "trace", []):
        n = sets.setdefault(seed, len(sets))
        matched = ",".join(d for d in donors if d) or "-"
        line = f"#   set {n} tier {tier} rung {level} away {away:.3f} closer {closer} donor {matched}"
        print(line, file=sys.stderr)


def save_descriptors(rows: dict[str, list[dict]], path: Path) -> None:
    """Every output's identity, descriptor and verification per setting (to study collisions and linkage)."""
    data = {}
    for name, items in rows.items():
        col = _columns(items)
        data[f"{name}_ids"] = np.array([i for i, _ in col["out_desc"]])
        data[f"{name}_desc"] = np.stack([d for _, d in col["out_desc"]]) if col["out_desc"] else np.zeros(0)
        data[f"{name}_ok"] = np.array(col["verified"], bool)
        data[f"{name}_sex_kept"] = np.array(col["sex_kept"], bool)
    np.savez(path, **data)


def fidelity(
    row: dict, subject: Subject, outputs: list, photos: list, probes: fq.Probes, kept: str = ""
) -> None:
    """Sharpness, seam, probes and box IoU of both photos of one group (appended to ``row``)."""
    ref = probes.reference  # type: ignore[attr-defined]
    for key in ("sharp", "seam", "smile_kept", "age_diff", "iou_dlib", "iou_dlib_sizes", "iou_mtcnn"):
        row[key] = []
    for img, out, p, det, before in zip(
        subject.images, outputs, photos, subject.detections, subject.descriptors, strict=True
    ):
        lm = det[0].landmarks
        row["sharp"].append(fq.skin_sharpness_ratio(img, out, lm))
        row["seam"].append(fq.seam_ratio(img, out, lm))
        who = subject.identity
        geo_in, geo_out = fq.geometry(lm, ref), fq.geometry(p.landmarks_out, ref)
        row["smile_kept"].append(probes.call("smile", who, geo_in) == probes.call("smile", who, geo_out))
        row["age_diff"].append(
            abs(probes.predict("age", who, before) - probes.predict("age", who, p.descriptor))
        )
        pairs = fq.box_pairs_sizes(img, out, lm.mean(0))
        sizes = [fq.box_iou(a, b) for a, b in pairs]
        if TRACE:
            photo = f"{who}_{EXPRESSIONS[len(row['iou_dlib'])]}"
            change = fq.outline_change(lm, p.landmarks_out)
            change.update(fq.contrast_change(img, out, lm, p.landmarks_out))
            box_trace(kept, photo, pairs, sizes, change)
            if SAVE_OUTPUTS:
                SAVE_OUTPUTS.mkdir(parents=True, exist_ok=True)
                Image.fromarray(out).save(SAVE_OUTPUTS / f"{kept}_{photo}.png")
        row["iou_dlib"].append(sizes[0])
        row["iou_dlib_sizes"].append(float(np.mean(sizes)))
        row["iou_mtcnn"].append(fq.box_iou(det[0].box, p.box_out))


def box_trace(kept: str, photo: str, pairs: list, sizes: list[float], change: dict[str, float]) -> None:
    """Per photo (stderr): the dlib box (x, y, side) of original and output at 480 px, the IoU at the six
    sizes, and the output's geometry against the original's (fq.outline_change)."""

    def fmt(box: tuple[int, int, int, int] | None) -> str:
        return "none" if box is None else f"{box[0]},{box[1]},{box[2] - box[0]}"

    geo = " ".join(f"{k} {v:.3f}" for k, v in change.items())
    ious = " ".join(f"{v:.2f}" for v in sizes)
    line = f"# box {kept} {photo} orig {fmt(pairs[0][0])} out {fmt(pairs[0][1])} iou {ious} | {geo}"
    print(line, file=sys.stderr)


def codec_metrics(row: dict, subject: Subject, results: list, preserve: tuple[Region, ...]) -> None:
    """Preserved-region PSNR after the gateway's codec and the share of bit-identical JPEG blocks."""
    row["psnr_codec"], row["blocks_same"] = [], []
    for img, jpeg, r, det in zip(subject.images, subject.jpeg, results, subject.detections, strict=True):
        decoded, same = fq.through_codec(jpeg, r.image)
        row["blocks_same"].append(same)
        if preserve:
            keep = region_mask(det[0].landmarks, preserve, img.shape[:2])
            row["psnr_codec"].append(psnr(img[keep], decoded[keep]))


def _rate(values: list) -> str:
    return f"{100 * np.mean(values):.1f}%" if values else "-"


def _mean(values: list, fmt: str = "{:.2f}") -> str:
    vals = [v for v in values if np.isfinite(v)]
    if values and not vals and all(v == float("inf") for v in values):
        return "inf"
    return fmt.format(np.mean(vals)) if vals else "-"


def _quantile(values: list, q: float, fmt: str = "{:.2f}") -> str:
    vals = [v for v in values if np.isfinite(v)]
    return fmt.format(np.quantile(vals, q)) if vals else "-"


def _min_psnr(values: list) -> str:
    finite = [v for v in values if not np.isnan(v)]
    if not finite:
        return "-"
    low = min(finite)
    return "inf (exact)" if low == float("inf") else f"{low:.1f}"


def _columns(items: list[dict]) -> dict[str, list]:
    col: dict[str, list] = defaultdict(list)
    for r in items:
        for k, v in r.items():
            if isinstance(v, list) and k != "outputs":
                col[k].extend(v)
    return col


def _markdown(head: tuple[str, ...], lines: list[tuple[str, ...]]) -> None:
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for cells in lines:
        print("| " + " | ".join(cells) + " |", flush=True)


def print_tables(
    rows: dict[str, list[dict]],
    gallery: dict[str, list[np.ndarray]],
    floors: dict,
    sexes: dict[str, str] | None = None,
) -> None:
    chance1, chance5 = 1 / len(gallery), min(1.0, 5 / len(gallery))
    privacy, quality = [], []
    for name, items in rows.items():
        col = _columns(items)
        ranks = fq.linkage_ranks(col["out_desc"], gallery)
        privacy.append(
            (
                name,
                str(len(items)),
                _rate(col["verified"]),
                _rate(col["deid_same"]),
                _rate(col["deid_other"]),
                _rate(col["pair"]),
                f"{_rate(col['leak'])} ({100 * floors['leak']:.1f}%)",
                f"{_rate([r == 1 for r in ranks])} / {_rate([r <= 5 for r in ranks])}",
                f"{100 * fq.collision_rate(col['out_desc']):.1f}% ({100 * floors['collisions']:.1f}%)",
                _rate(col["sex_kept"]),
                _mean(col["id_distance"]),
                f"{np.mean([r['seconds'] for r in items]):.2f}" if items else "-",
            )
        )
        quality.append(
            (
                name,
                f"{_quantile(col['sharp'], 0.5)} / {_quantile(col['sharp'], 0.1)}",
                _quantile(col["seam"], 0.5),
                _rate(col["smile_kept"]),
                _rate(col["sex_kept"]),
                _mean(col["age_diff"], "{:.1f}"),
                f'{_mean(col["iou_dlib"], "{:.3f}")} / {_mean(col["iou_dlib_sizes"], "{:.3f}")}',
                _mean(col["iou_mtcnn"], "{:.3f}"),
                _min_psnr(col["region_psnr"]),
                _mean(col["psnr_codec"], "{:.1f}"),
                _rate(col["blocks_same"]),
                f"{_rate(col['mtcnn'])} / {_rate(col['hog'])}",
            )
        )
    print(
        f"\n# privacy and yield (linkage chance {100 * chance1:.1f}% / {100 * chance5:.1f}%, "
        f"gallery of {len(gallery)} identities)"
    )
    _markdown(
        (
            "setting",
            "groups",
            "forwarded",
            "de-ID same",
            "de-ID other",
            "pair cons.",
            "donor leak (floor)",
            "linkage r1 / r5",
            "collisions (real)",
            "sex kept",
            "mean dist",
            "s/pair",
        ),
        privacy,
    )
    if sexes:
        print_same_sex_linkage(rows, gallery, sexes)
    print("\n# fidelity")
    _markdown(
        (
            "setting",
            "sharpness med / p10",
            "seam med",
            "smile kept",
            "sex kept",
            "age diff (y)",
            "IoU dlib 480 px / 6 sizes",
            "IoU MTCNN",
            "PSNR raw min",
            "PSNR codec",
            "blocks identical",
            "found MTCNN / HOG",
        ),
        quality,
    )


def print_same_sex_linkage(
    rows: dict[str, list[dict]], gallery: dict[str, list[np.ndarray]], sexes: dict[str, str]
) -> None:
    """The linkage attack again for an attacker who knows the patient's sex (the outputs keep it by
    design): the gallery holds only the originals of her self-reported sex (face_quality.same_sex_cells)."""
    print("\n# linkage within the patient's self-reported sex (gallery: the originals of that sex)")
    lines = [(name, *fq.same_sex_cells(_columns(i)["out_desc"], gallery, sexes)) for name, i in rows.items()]
    _markdown(("setting", *fq.SAME_SEX_HEAD), lines)


def _face_tile(image: np.ndarray, box: tuple[int, int, int, int], size: int) -> np.ndarray:
    x0, y0, x1, y1 = box
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, 0.75 * max(x1 - x0, y1 - y0)
    h, w = image.shape[:2]
    a, b = int(max(0, cx - half)), int(max(0, cy - half))
    c, d = int(min(w, cx + half)), int(min(h, cy + half))
    if size <= 0:  # the photo's own resolution (to judge skin detail and seams)
        return image[b:d, a:c]
    return cv2.resize(image[b:d, a:c], (size, size), interpolation=cv2.INTER_AREA)


def _label(tile: np.ndarray, text: str) -> np.ndarray:
    out = tile.copy()
    cv2.putText(out, text, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 0), 2, cv2.LINE_AA)
    return out


def contact_sheet(subject: Subject, outputs: dict[str, list], path: Path, size: int = 480) -> None:
    """One identity: rows neutral / smiling; columns original | each setting (preserved region outlined)."""
    rows = []
    for i in range(2):
        det = subject.detections[i][0]
        tiles = [_label(_face_tile(subject.images[i], det.box, size), "original")]
        for name, images in outputs.items():
            image = images[i]
            if image is None:
                tiles.append(_label(np.zeros_like(tiles[0]), f"{name}: none"))
                continue
            _, preserve = CONFIGS[name]
            if preserve:
                keep = region_mask(det.landmarks, preserve, image.shape[:2]).astype(np.uint8)
                contours, _ = cv2.findContours(keep, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
                image = cv2.drawContours(image.copy(), contours, -1, (0, 255, 0), 1)
            tiles.append(_label(_face_tile(image, det.box, size), name))
        rows.append(np.hstack(tiles))
    path.parent.mkdir(parents=True, exist_ok=True)
    if size <= 0:  # the two photos' face boxes differ in size: one file per photo
        for row, e in zip(rows, EXPRESSIONS, strict=True):
            Image.fromarray(row).save(path.with_name(f"{path.stem}_{e}.png"))
        return
    Image.fromarray(np.vstack(rows)).save(path)


def sheet_order(ids: list[str], manifest: dict[str, dict[str, str]]) -> list[str]:
    """Identities for contact sheets: one per self-reported ethnicity and sex first (every skin tone)."""
    seen: set[tuple[str, str]] = set()
    first, rest = [], []
    for identity in ids:
        row = manifest.get(identity, {})
        key = (row.get("ethnicity_self_reported", ""), row.get("gender_self_reported", ""))
        (rest if key in seen else first).append(identity)
        seen.add(key)
    return first + rest


def floors(originals: Originals, folds: list[tuple[list[str], list[str]]], banks: list[np.ndarray]) -> dict:
    """What real faces do: test originals matching a donor photo, and collisions between real people."""
    leaks = []
    for (_, test_ids), donors in zip(folds, banks, strict=True):
        for identity in test_ids:
            for e in EXPRESSIONS:
                leaks.append(donor_leak(originals.descriptors[originals.index[(identity, e)]], donors)[0])
    items = [(i, originals.descriptors[n]) for (i, _), n in originals.index.items()]
    return {"leak": float(np.mean(leaks)), "collisions": fq.collision_rate(items)}




def kept_overrides(value: str, defaults: SurrogateSettings) -> tuple[tuple[str, object], ...]:
    """"NAME:VALUE,NAME:VALUE" as the (NAME, VALUE) pairs of one of ``KEPT_OVERRIDES``,
    each VALUE converted like that field's default."""
    pairs = []
    for item in filter(None, value.split(",")):
        name, _, text = item.partition(":")
        if name not in SurrogateSettings.__dataclass_fields__:
            raise SystemExit(f"unknown surrogate setting: {name}")
        kind = type(getattr(defaults, name))
        pairs.append((name, text.lower() in ("1", "true", "yes") if kind is bool else kind(text)))
    return tuple(pairs)


def engine_overrides(pairs: list[str]) -> dict[str, object]:
    """NAME=VALUE pairs as SurrogateSettings fields, each VALUE converted like the field's default."""
    defaults = SurrogateSettings()
    out: dict[str, object] = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        if name not in SurrogateSettings.__dataclass_fields__:
            raise SystemExit(f"unknown surrogate setting: {name}")
        kind = type(getattr(defaults, name))
        if name in KEPT_OVERRIDES:  # "NAME:VALUE,NAME:VALUE" ("" = none)
            out[name] = kept_overrides(value, defaults)
            continue
        if kind is tuple:  # rungs: "texture,shape,jaw,push,anti[,soft];..." ("" = none)
            out[name] = tuple(Strength(*map(float, r.split(","))) for r in value.split(";") if r)
            continue
        out[name] = value.lower() in ("1", "true", "yes") if kind is bool else kind(value)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=Path, default=FACES)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "out")
    parser.add_argument("--subset", "--limit", type=int, default=0, help="test identities per fold (0 = all)")
    parser.add_argument("--settings", "--configs", nargs="*", default=list(DEFAULT_SETTINGS), choices=CONFIGS)
    parser.add_argument("--sheet", type=int, default=8, help="identities with a contact sheet")
    parser.add_argument("--ids", nargs="*", default=[], help="test only these identities, each with a sheet")
    parser.add_argument("--tile", type=int, default=480, help="sheet tile side (0 = native pixels)")
    parser.add_argument("--no-codec", action="store_true", help="skip the DICOM codec measures")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--folds",
        type=int,
        default=2,
        help="2: the two half banks; K: the whole set's bank less each K-th part; 39: leave-one-out",
    )
    parser.add_argument("--trace", action="store_true", help="per group: verification and rungs (stderr)")
    parser.add_argument("--population-rank", type=int, help="the surrogate's linkage aim")
    parser.add_argument("--privacy-only", action="store_true", help="skip the fidelity and codec measures")
    parser.add_argument("--save-outputs", type=Path, help="with --trace: every output as PNG in this folder")
    parser.add_argument(
        "--issued",
        action="store_true",
        help="one store of issued synthetic identities per setting, shared by every group of this process in "
        "the bench's order (the reach is the setting issued_distance; runs split by --ids do not see "
        "each other's)",
    )
    parser.add_argument(
        "--engine-setting",
        nargs="*",
        default=[],
        metavar="NAME=VALUE",
        help="surrogate settings to override (surrogate_settings.py), e.g. spread_texture=5 sex_reader=probe",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    global TRACE, PRIVACY_ONLY, SAVE_OUTPUTS
    TRACE, PRIVACY_ONLY, SAVE_OUTPUTS = args.trace, args.privacy_only, args.save_outputs
    folder = args.faces / "london_set"
    if not folder.is_dir():
        print(f"no photos at {folder}; this bench needs ../shared/data/faces", file=sys.stderr)
        return 1
    ids = identities(folder)
    manifest = read_manifest(args.faces)
    originals = Originals(folder, ids, args.out / "originals.npz")
    probes = build_probes(originals, ids, manifest)
    own = probes.own_accuracy()
    print(
        f"# probes on originals (leave-identity-out): smile {100 * own['smile']:.1f}%, "
        f"sex {100 * own['sex']:.1f}%, "
        f"age MAE {own['age_mae']:.1f} y",
        flush=True,
    )
    sheet_ids = set(args.ids) or set(sheet_order(ids, manifest)[: args.sheet])
    folds = split_folds(ids, args.folds)
    banks = fold_banks(args.out, folds, folder)
    donor_descs = [np.stack([p.descriptor for p in b.photos]) for b in banks]
    rows: dict[str, list[dict]] = {name: [] for name in args.settings}
    stores = {name: MemoryIssued() for name in args.settings} if args.issued else {}
    for fold, ((_, test_ids), bank) in enumerate(zip(folds, banks, strict=True)):
        options = engine_overrides(args.engine_setting)
        if args.population_rank is not None:
            options["population_rank"] = args.population_rank
        engines = {"surrogate": SurrogateEngine(SurrogateSettings(**options), bank)}
        chosen = [i for i in test_ids if i in args.ids] if args.ids else test_ids
        for test_id in chosen[: args.subset or None]:
            subject = Subject(originals, test_id)
            sheet: dict[str, list] = {}
            for name in args.settings:
                kind, preserve = CONFIGS[name]
                engine = engines.get(kind) or engines.setdefault(kind, create_engine(kind))
                if isinstance(engine, SurrogateEngine):  # the folds' engines share the setting's store
                    engine.issued = stores.get(name)
                row = evaluate(subject, engine, preserve, donor_descs[fold], probes, not args.no_codec)
                sheet[name] = row.pop("outputs")
                rows[name].append(row)
            if test_id in sheet_ids:
                contact_sheet(subject, sheet, args.out / "sheets" / f"{test_id}.png", args.tile)
            print(f"# fold {fold} {test_id} done", file=sys.stderr, flush=True)
    sexes = {identity: self_reported_sex(manifest.get(identity, {})) for identity in ids}
    print_tables(rows, originals.gallery(), floors(originals, folds, donor_descs), sexes)
    if TRACE:
        save_descriptors(rows, args.out / "outputs.npz")
    print(f"# contact sheets: {args.out / 'sheets'}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
