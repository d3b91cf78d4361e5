"""Bench: burned-in text (name cards, wristbands, overlays, date stamps, writing on skin) found and removed.

Draws canary text (Debian fonts, 12-80 px cap height, ±30°) onto London Set faces (away from the face, which
the bench treats as the preserved region) and onto plain clinical-looking backgrounds, runs the text step
(`anonymizer.text.step.scrub`, default policy `redact`), and prints one table:

* canary tokens readable on the output by an attacker OCR that knows where each card was and how it was turned
  (target 0), beside the share readable on the input by the same attacker (tesseract in block mode on the
  straightened area at cap height 32 px and at the photo's own size, in brightness and along the main colour
  axis stretched to full range, both polarities: `anonymizer.evaluation.canary_text.readable_tokens`);
* photos quarantined (target ≤ 2 %);
* false redactions: the same base photos without text, redacted or quarantined (target ≤ 2 %);
* preserved-region pixels unchanged (target 100 %);
* time added per 12 MP photo (target ≤ 0.3 s), beside a full-page tesseract pass on the same photo (the peer).

    PYTHONPATH=. .venv/bin/python bench/text_pixels.py [--photos 200] [--seed 7] [--sheet bench/out/text.png]

About 5 minutes for 200 photos on an idle 2-core machine (the attacker reads each canary 4-8 times).
Reads ../shared/data/faces/london_set (never committed).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from anonymizer.evaluation.canary_text import (
    Canary,
    CanaryKind,
    clinical_background,
    draw_canaries,
    readable_tokens,
)
from anonymizer.plans import TextPlan
from anonymizer.text.step import TextResult, scrub

FACES = Path(__file__).resolve().parents[1].parent / "shared/data/faces/london_set"


@dataclass
class Case:
    photo: np.ndarray  # with canaries
    clean: np.ndarray  # the same photo without
    canaries: list[Canary]
    protected: np.ndarray  # bool mask of the region that must not change (the face zone on faces)


def _face_zone(shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    h, w = shape[:2]
    return int(0.24 * w), int(0.16 * h), int(0.76 * w), int(0.86 * h)


def make_cases(n: int, seed: int) -> list[Case]:
    rng = np.random.default_rng(seed)
    faces = sorted(FACES.glob("*.jpg"))
    kinds = list(CanaryKind)
    cases = []
    for i in range(n):
        if i % 2 == 0 and faces:
            base = cv2.cvtColor(cv2.imread(str(faces[(i // 2) % len(faces)])), cv2.COLOR_BGR2RGB)
            zone = _face_zone(base.shape)
            avoid = [zone]
        else:
            base, avoid = clinical_background(rng), []
        picked = [kinds[j] for j in rng.choice(len(kinds), size=int(rng.integers(1, 4)), replace=False)]
        photo, canaries = draw_canaries(base, rng, picked, avoid=avoid)
        protected = np.zeros(base.shape[:2], bool)
        for x0, y0, x1, y1 in avoid:
            protected[y0:y1, x0:x1] = True
        cases.append(Case(photo, base, canaries, protected))
    return cases


def _twelve_mp(rng: np.random.Generator, with_text: bool) -> np.ndarray:
    return _twelve_mp_canaries(rng, with_text)[0]


def _twelve_mp_canaries(rng: np.random.Generator, with_text: bool) -> tuple[np.ndarray, list[Canary]]:
    faces = sorted(FACES.glob("*.jpg"))
    base = cv2.cvtColor(cv2.imread(str(faces[int(rng.integers(0, len(faces)))])), cv2.COLOR_BGR2RGB)
    wide = np.pad(base, ((0, 0), (450, 450), (0, 0)), mode="edge")
    big = cv2.resize(wide, (4000, 3000), interpolation=cv2.INTER_CUBIC)
    if not with_text:
        return big, []
    return draw_canaries(big, rng, [CanaryKind.CARD, CanaryKind.DATESTAMP],
                         avoid=[(1100, 400, 2900, 2700)], cap_range=(40, 160))


def timing(rng: np.random.Generator, photos: int) -> dict[str, float]:
    scrub(_twelve_mp(rng, False), TextPlan())  # warm: tesseract loads its model once per thread
    clean, text, clean_cpu, text_cpu = [], [], [], []
    for i in range(photos):
        img = _twelve_mp(rng, with_text=i % 2 == 1)
        t0, c0 = time.perf_counter(), time.process_time()
        scrub(img, TextPlan())
        (text if i % 2 else clean).append(time.perf_counter() - t0)
        (text_cpu if i % 2 else clean_cpu).append(time.process_time() - c0)
    median = statistics.median
    return {"clean": median(clean), "clean_max": max(clean), "clean_cpu": median(clean_cpu),
            "text": median(text), "text_max": max(text), "text_cpu": median(text_cpu)}


def paired_timing(baseline: Path, seed: int, photos: int, rounds: int) -> tuple[dict, dict]:
    """Time per 12 MP photo of this tree and of ``baseline`` (another checkout, e.g. main), in alternating
    rounds of fresh processes on the same photos, so that both see the same machine load: (ours, theirs),
    the medians over the rounds."""
    ours: list[dict[str, float]] = []
    theirs: list[dict[str, float]] = []
    here = Path(__file__).resolve().parents[1]
    for _ in range(rounds):
        for tree, into in ((here, ours), (baseline.resolve(), theirs)):
            env = {**os.environ, "PYTHONPATH": str(tree)}
            cmd = [sys.executable, str(Path(__file__).resolve()), "--timing-only", "--seed", str(seed),
                   "--timing-photos", str(photos)]
            into.append(json.loads(subprocess.run(cmd, env=env, check=True, capture_output=True,
                                                  text=True).stdout.strip().splitlines()[-1]))
    def median(runs: list[dict[str, float]]) -> dict[str, float]:
        return {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    return median(ours), median(theirs)


def peer_full_page(rng: np.random.Generator) -> tuple[float, int, int]:
    """tesseract's own page layout + recognition over the whole 12 MP photo (what a naive check would do):
    (seconds, canary tokens it read, tokens drawn)."""
    from tesserocr import PSM, PyTessBaseAPI

    from anonymizer.text.ocr import tessdata_dir

    photo, canaries = _twelve_mp_canaries(rng, True)
    grey = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY)
    with PyTessBaseAPI(path=str(tessdata_dir()) + "/", lang="eng", psm=PSM.SPARSE_TEXT) as api:
        t0 = time.perf_counter()
        api.SetImageBytes(grey.tobytes(), grey.shape[1], grey.shape[0], 1, grey.shape[1])
        read = {"".join(filter(str.isalnum, w)).upper() for w in api.GetUTF8Text().split()}
        seconds = time.perf_counter() - t0
    tokens = [t for c in canaries for t in c.tokens]
    return seconds, sum("".join(filter(str.isalnum, t)).upper() in read for t in tokens), len(tokens)


def _dump_miss(folder: Path, index: int, canary: Canary, photo: np.ndarray, out: np.ndarray,
               found: int) -> None:
    """The missed canary's area before and after (straightened, stacked) as a PNG, for looking at; the file
    name holds the case index, kind, size and angle, never the printed tokens."""
    from anonymizer.evaluation.canary_text import straightened  # not in a --baseline tree of before

    before, after = straightened(photo, canary), straightened(out, canary)
    pair = np.vstack([before, np.full((6, before.shape[1], 3), 255, np.uint8), after])
    shape = f"{canary.kind}_{canary.cap_px}px_{canary.angle:+.0f}deg"
    name = f"case{index:03d}_{shape}_{found}of{len(canary.tokens)}.png"
    folder.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(folder / name), cv2.cvtColor(pair, cv2.COLOR_RGB2BGR))
    print(f"miss: case {index} {canary.kind} cap {canary.cap_px} px angle {canary.angle:+.0f} "
          f"{found}/{len(canary.tokens)} tokens readable", flush=True)


def _sheet(path: Path, pairs: list[tuple[np.ndarray, TextResult]]) -> None:
    tiles = []
    for photo, res in pairs[:8]:
        out = res.image if res.image is not None else np.zeros_like(photo)
        pair = np.hstack([photo, out])
        tiles.append(cv2.resize(pair, (800, int(800 * pair.shape[0] / pair.shape[1]))))
    width = max(t.shape[1] for t in tiles)
    sheet = np.vstack([np.pad(t, ((0, 4), (0, width - t.shape[1]), (0, 0))) for t in tiles])
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))


def _print_paired(ours: dict[str, float], theirs: dict[str, float], args: argparse.Namespace) -> None:
    print(f"12 MP photos, {args.timing_photos} per round (half with card + date stamp), {args.rounds} "
          f"alternating rounds, median; load {os.getloadavg()[0]:.1f} (1-min average, 2 cores)")
    print(f"{'photo':<22} {'ours wall / CPU':<20} {'baseline wall / CPU':<22} ratio (CPU)")
    for key, name in (("clean", "no text"), ("text", "card + date stamp")):
        cpu, base_cpu = ours[f"{key}_cpu"], theirs[f"{key}_cpu"]
        print(f"{name:<22} {ours[key]:.3f} / {cpu:.3f} s{'':<4} {theirs[key]:.3f} / {base_cpu:.3f} s{'':<6} "
              f"{cpu / base_cpu:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--photos", type=int, default=200)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--timing-photos", type=int, default=6, help="12 MP photos timed (half with text)")
    ap.add_argument("--sheet", type=Path, default=None, help="write before/after pairs here (PNG)")
    ap.add_argument("--misses", type=Path, default=None, help="write each missed canary's crops here (PNG)")
    ap.add_argument("--cases", type=int, nargs="*", default=None, help="run only these case indices")
    ap.add_argument("--baseline", type=Path, default=None,
                    help="another checkout (e.g. /work/main): time its text step beside ours, nothing else")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds with --baseline")
    ap.add_argument("--timing-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.timing_only:  # one round of paired_timing, in a fresh process
        print(json.dumps(timing(np.random.default_rng(args.seed), args.timing_photos)))
        return
    if args.baseline:
        _print_paired(*paired_timing(args.baseline, args.seed, args.timing_photos, args.rounds), args)
        return
    cases = make_cases(args.photos, args.seed)
    chosen = range(len(cases)) if args.cases is None else args.cases
    tokens = before = after = quarantined = false_hits = 0
    protected_ok = protected_total = 0
    reasons: dict[str, int] = {}
    pairs = []
    t0, cpu0 = time.perf_counter(), time.process_time()
    for index in chosen:
        case = cases[index]
        res = scrub(case.photo, TextPlan(), case.protected)
        pairs.append((case.photo, res))
        for c in case.canaries:
            tokens += len(c.tokens)
            before += len(readable_tokens(case.photo, c))
            if res.image is not None:
                missed = len(readable_tokens(res.image, c))
                after += missed
                if missed and args.misses:
                    _dump_miss(args.misses, index, c, case.photo, res.image, missed)
        if res.image is None:
            quarantined += 1
            reasons[res.reason.split(":")[0]] = reasons.get(res.reason.split(":")[0], 0) + 1
        else:
            protected_total += 1
            protected_ok += bool(np.array_equal(res.image[case.protected], case.photo[case.protected]))
        plain = scrub(case.clean, TextPlan(), case.protected)
        false_hits += plain.image is None or plain.report.redacted > 0
    elapsed, elapsed_cpu = time.perf_counter() - t0, time.process_time() - cpu0
    rng = np.random.default_rng(args.seed)
    if args.timing_photos:
        times = timing(rng, args.timing_photos)
        peer, peer_read, peer_tokens = peer_full_page(rng)
    else:  # quality only (--timing-photos 0)
        times = dict.fromkeys(("clean", "clean_max", "clean_cpu", "text", "text_max", "text_cpu"), 0.0)
        peer, peer_read, peer_tokens = 1.0, 0, 0
    n = len(chosen)
    rows = [
        ("photos with canary text", f"{n} ({n // 2 + n % 2} faces, {n // 2} clinical backgrounds)", ""),
        ("canary tokens drawn", f"{tokens}", ""),
        ("tokens readable on input (attacker OCR)", f"{before} ({before / max(tokens, 1):.1%})", ""),
        ("tokens readable on output", f"{after} ({after / max(tokens, 1):.1%})", "0"),
        ("photos quarantined", f"{quarantined} ({quarantined / n:.1%}) {reasons or ''}", "≤ 2 %"),
        ("false redactions (same photos, no text)", f"{false_hits} ({false_hits / n:.1%})", "≤ 2 %"),
        ("preserved region unchanged", f"{protected_ok}/{protected_total}", "100 %"),
        ("12 MP, no text: added time (median / max)", f"{times['clean']:.3f} / {times['clean_max']:.3f} s "
         f"(CPU {times['clean_cpu']:.3f} s)", "≤ 0.3 s"),
        ("12 MP, card + date stamp (median / max)", f"{times['text']:.3f} / {times['text_max']:.3f} s "
         f"(CPU {times['text_cpu']:.3f} s)", ""),
        ("peer: full-page tesseract, one 12 MP photo", f"{peer:.2f} s, read {peer_read}/{peer_tokens} tokens "
         f"(time ratio ours/peer {times['text'] / peer:.2f})", ""),
        ("bench wall time (text step + attacker OCR)", f"{elapsed:.0f} s (CPU {elapsed_cpu:.0f} s)", ""),
        ("machine load (1-min average, 2 cores)", f"{os.getloadavg()[0]:.1f}", ""),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'result':<52}  target")
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:<52}  {target}")
    if args.sheet:
        _sheet(args.sheet, pairs)


if __name__ == "__main__":
    main()
