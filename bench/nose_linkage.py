"""What holds a kept-nose output near its patient (issue 11, nose kept): per photo, which gallery faces
outrank the patient's own original, how far they are, whether the fold's donor bank holds them (or a
look-alike), the donors of the group, and the sex readings; then how much rank an exact nose alone gives.

    .venv/bin/python bench/nose_linkage.py run --ids 022 025 029 033 019 024 027 030 --out DIR \
        [--engine-setting nose_kept=NAME:VALUE,...]    # outputs (PNG) + one line per photo
    .venv/bin/python bench/nose_linkage.py paste --out DIR    # the patient's nose in other faces
    .venv/bin/python bench/nose_linkage.py summary --out DIR  # the run's privacy columns and collisions again

``paste``: each patient's original nose region (the engine's own mask) is moved by a similarity fit of the
nose points onto (a) the other patients' outputs of the run and (b) every other gallery identity's original,
and the patient's rank in the gallery (the host's own identity left out for originals) is read from the
composite's descriptor, next to the rank the host gives the patient without the nose.
Runs on the London set like eval_pixels.py (same folds, seeds, gallery and probes).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import eval_pixels as ev  # noqa: E402

from anonymizer.donors import load_bank  # noqa: E402
from anonymizer.engines.surrogate import SurrogateEngine, SurrogateSettings  # noqa: E402
from anonymizer.engines.surrogate_donors import apparent_sex  # noqa: E402
from anonymizer.evaluation.metrics import output_face  # noqa: E402
from anonymizer.faces.pipeline import run_group  # noqa: E402
from anonymizer.faces.regions import region_mask  # noqa: E402
from anonymizer.faces.verify import descriptor  # noqa: E402
from anonymizer.plans import Region  # noqa: E402

NOSE = slice(27, 36)


def _setup(faces: Path) -> tuple:
    folder = faces / "london_set"
    ids = ev.identities(folder)
    originals = ev.Originals(folder, ids, ev.REPO / "bench" / "out" / "originals.npz")
    probes = ev.build_probes(originals, ids, ev.read_manifest(faces))
    folds = [(ids[0::2], ids[1::2]), (ids[1::2], ids[0::2])]
    cache = ev.REPO / "bench" / "out"
    banks = [load_bank(ev.fold_bank(cache, f, b, folder)) for f, (b, _) in enumerate(folds)]
    return folder, ids, originals, probes, folds, banks


def _nearest(gallery: dict[str, list[np.ndarray]], desc: np.ndarray) -> dict[str, float]:
    return {i: float(np.linalg.norm(np.stack(g) - desc[None], axis=1).min()) for i, g in gallery.items()}


def _rank(near: dict[str, float], identity: str, leave_out: str = "") -> int:
    return 1 + sum(d < near[identity] for i, d in near.items() if i not in (identity, leave_out))


def run(args: argparse.Namespace) -> None:
    _, _, originals, probes, folds, banks = _setup(args.faces)
    gallery = originals.gallery()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for fold, ((bank_ids, test_ids), bank) in enumerate(zip(folds, banks, strict=True)):
        engine = SurrogateEngine(SurrogateSettings(**ev.engine_overrides(args.engine_setting)), bank)
        chosen = [i for i in test_ids if i in args.ids] if args.ids else test_ids[: args.subset]
        bank_gallery = {i: gallery[i] for i in bank_ids}
        for pid in chosen:
            subject = ev.Subject(originals, pid)
            results = run_group(
                subject.images, engine, ev.seed_for(pid), (Region.NOSE,), detections=subject.detections
            )
            chosen_donors = engine.last_choice.identities if engine.last_choice else ()
            donors = [d.removeprefix("london_") for d in chosen_donors]
            for k, (e, r) in enumerate(zip(ev.EXPRESSIONS, results, strict=True)):
                lm = subject.detections[k][0].landmarks
                out_lm, _ = output_face(r.image, lm)
                desc = descriptor(r.image, out_lm)
                Image.fromarray(r.image).save(args.out / f"{pid}_{e}.png")
                near = _nearest(gallery, desc)
                rank = _rank(near, pid)
                above = sorted((d, i) for i, d in near.items() if i != pid and d < near[pid])
                look = {}
                for _, i in above:  # the bank's nearest identity to each face that outranks the patient
                    own = _nearest(bank_gallery, np.mean(gallery[i], axis=0))
                    j = min(own, key=own.get)
                    look[i] = (j, own[j])
                check = r.faces[0].check if r.faces else None
                row = {
                    "id": pid,
                    "e": e,
                    "fold": fold,
                    "ok": r.ok,
                    "reason": r.reason,
                    "verify": None if check is None else round(float(check.distance), 3),
                    "dist": round(near[pid], 3),
                    "rank": rank,
                    "donors": donors,
                    "above": [
                        (i, round(d, 3), i in bank_ids, i in donors, look[i][0], round(look[i][1], 3))
                        for d, i in above
                    ],
                    "sex_orig": probes.call("sex", pid, subject.descriptors[k]),
                    "sex_out": probes.call("sex", pid, desc),
                    "sex_score_out": round(float(probes.predict("sex", pid, desc)), 3),
                    "sex_centroids_out": apparent_sex(desc, bank),
                    "landmarks": np.asarray(out_lm).tolist(),
                    "desc": desc.tolist(),
                }
                rows.append(row)
                print(_line(row), flush=True)
    (args.out / "rows.json").write_text(json.dumps(rows))
    _summary(rows)


def _summary(rows: list[dict]) -> None:
    """The bench's privacy columns over these photos (counted as eval_pixels does), then each collision."""
    descs = np.array([r["desc"] for r in rows])
    dist = np.linalg.norm(descs[:, None] - descs[None], axis=2)
    n = len(rows)
    pairs = [(a, b) for a in range(n) for b in range(a + 1, n) if rows[a]["id"] != rows[b]["id"]]
    share = {
        "forwarded": [r["ok"] for r in rows],
        "r1": [r["rank"] == 1 for r in rows],
        "r5": [r["rank"] <= 5 for r in rows],
        "collisions": [dist[a, b] < 0.6 for a, b in pairs],
        "sex kept": [r["sex_orig"] == r["sex_out"] for r in rows],
    }
    line = " ".join(f"{k} {100 * np.mean(v):.1f}" for k, v in share.items())
    print(f"# summary: {line} mean dist {np.mean([r['dist'] for r in rows]):.3f}")
    for a, b in pairs:
        if dist[a, b] < 0.6:
            common = sorted(set(rows[a]["donors"]) & set(rows[b]["donors"]))
            print(
                f"collision {rows[a]['id']}_{rows[a]['e']} {rows[b]['id']}_{rows[b]['e']} "
                f"{dist[a, b]:.3f} shared donors {len(common)}: {','.join(common)}"
            )


def _line(r: dict) -> str:
    above = " ".join(
        f"{i}:{d:.3f}{'b' if bank else ''}{'D' if donor else ''}(~{j}:{dj:.2f})"
        for i, d, bank, donor, j, dj in r["above"]
    )
    return (
        f"{r['id']}_{r['e']} f{r['fold']} {'ok' if r['ok'] else r['reason']} verify {r['verify']} "
        f"dist {r['dist']:.3f} rank {r['rank']} sex {r['sex_orig']}->{r['sex_out']} "
        f"({r['sex_score_out']:+.2f}, centroids {r['sex_centroids_out']}) | above: {above}"
    )


def paste_nose(source: np.ndarray, src_lm: np.ndarray, host: np.ndarray, host_lm: np.ndarray) -> np.ndarray:
    """``source``'s nose region (the kept-nose mask) moved onto ``host``'s nose by a similarity fit."""
    matrix, _ = cv2.estimateAffinePartial2D(src_lm[NOSE].astype(np.float32), host_lm[NOSE].astype(np.float32))
    mask = region_mask(src_lm, (Region.NOSE,), source.shape[:2]).astype(np.float32)
    size = (host.shape[1], host.shape[0])
    moved = cv2.warpAffine(source, matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    alpha = cv2.GaussianBlur(cv2.warpAffine(mask, matrix, size), (0, 0), 2.0)[..., None]
    return (alpha * moved + (1 - alpha) * host).round().astype(np.uint8)


def paste(args: argparse.Namespace) -> None:
    folder, ids, originals, _, _, _ = _setup(args.faces)
    gallery = originals.gallery()
    rows = json.loads((args.out / "rows.json").read_text())
    outputs = {(r["id"], r["e"]): r for r in rows}
    patients = sorted({r["id"] for r in rows})
    images: dict[tuple[str, str], np.ndarray] = {}

    def image(identity: str, e: str, output: bool) -> np.ndarray:
        key = (identity + ("o" if output else ""), e)
        if key not in images:
            path = args.out / f"{identity}_{e}.png" if output else folder / f"{identity}_{e}.jpg"
            images[key] = np.asarray(Image.open(path).convert("RGB"))
        return images[key]

    summary = {"outputs": [], "originals": []}
    for pid in patients:
        for e in ev.EXPRESSIONS:
            src_lm = originals.landmarks[originals.index[(pid, e)]]
            source = image(pid, e, False)
            for host in patients:  # (a) other patients' kept-nose outputs
                if host == pid:
                    continue
                h = outputs[(host, e)]
                lm = np.asarray(h["landmarks"])
                base = _rank(_nearest(gallery, np.asarray(h["desc"])), pid)
                near = _nearest(gallery, descriptor(paste_nose(source, src_lm, image(host, e, True), lm), lm))
                summary["outputs"].append((pid, e, host, base, _rank(near, pid), near[pid]))
            for host in ids:  # (b) every other identity's original (its own identity left out)
                if host == pid or (args.originals and host not in args.originals):
                    continue
                lm = originals.landmarks[originals.index[(host, e)]]
                base = _rank(_nearest(gallery, originals.descriptors[originals.index[(host, e)]]), pid, host)
                composite = paste_nose(source, src_lm, image(host, e, False), lm)
                near = _nearest(gallery, descriptor(composite, lm))
                summary["originals"].append((pid, e, host, base, _rank(near, pid, host), near[pid]))
        for kind in ("outputs", "originals"):
            mine = [s for s in summary[kind] if s[0] == pid]
            print(f"{pid} into {kind}: {_ranks(mine)}", flush=True)
    for kind in ("outputs", "originals"):
        print(f"ALL into {kind}: {_ranks(summary[kind])}")
    (args.out / "paste.json").write_text(json.dumps(summary))


def _ranks(items: list[tuple]) -> str:
    """(patient, expression, host, rank without the nose, rank with it, distance with it) rows in one line;
    "verifiable": the composites farther than verification's 0.65 from the patient and not ranked 1st."""
    without, with_nose = np.array([s[3] for s in items]), np.array([s[4] for s in items])
    far = np.array([s[5] > 0.65 and s[4] > 1 for s in items])
    return (
        f"n {len(items)}, rank 1 {np.mean(without == 1):.3f} -> {np.mean(with_nose == 1):.3f}, "
        f"rank <= 5 {np.mean(without <= 5):.3f} -> {np.mean(with_nose <= 5):.3f}, "
        f"median rank {np.median(without):.0f} -> {np.median(with_nose):.0f}; verifiable {far.sum()}: "
        f"rank <= 5 {np.mean(with_nose[far] <= 5) if far.any() else float('nan'):.3f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("run", "paste", "summary"))
    parser.add_argument("--faces", type=Path, default=ev.FACES)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--ids", nargs="*", default=[])
    parser.add_argument("--subset", type=int, default=4)
    parser.add_argument("--originals", nargs="*", default=[], help="paste: only these hosts' originals")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--engine-setting", nargs="*", default=[], metavar="NAME=VALUE")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.mode == "summary":  # again, from a run's rows.json
        _summary(json.loads((args.out / "rows.json").read_text()))
    else:
        run(args) if args.mode == "run" else paste(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
