"""Cost of the rule language on the gateway's paths: load/validate, decide, watcher poll, explain.

    .venv/bin/python bench/rules.py [--repeats 2000]

Prints the median of several rounds for: ``load_rules`` of each shipped file (YAML compose + pydantic +
whole-file checks + compile), ``RuleSet.decide`` on a realistic VL Photographic header for the first, middle
and catch-all route of the ophthalmology example, ``RulesWatcher.poll`` when nothing changed (the per-job
cost in the gateway), and ``rules explain`` (route trace + full de-identification of a copy) on a photo.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dicom_rules import RulesWatcher, load_rules  # noqa: E402
from dicom_rules.explain import explain  # noqa: E402
from tests.rules.conftest import photo_dataset  # noqa: E402


def median_us(fn: Callable[[], object], repeats: int, rounds: int = 5) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        times.append((time.perf_counter() - start) / repeats * 1e6)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2000)
    args = parser.parse_args()
    for path in sorted((ROOT / "dicom_rules").rglob("*.yaml")):
        print(f"load_rules {path.name:22s} {median_us(lambda p=path: load_rules(p), 20) / 1000:8.2f} ms")
    rules = load_rules(ROOT / "dicom_rules" / "examples" / "ophthalmology.yaml")
    cases = {
        "route 1 (fundus)": (photo_dataset(Modality="OP"), "EYE_FUNDUS"),
        "route 2 (eye photos)": (photo_dataset(), "EYE_CAM"),
        "route 3 (catch-all)": (photo_dataset(Rows=100), "EYE_CAM"),
    }
    for label, (ds, ae) in cases.items():
        assert rules.decide(ds, ae).route_name
        print(f"decide {label:28s} {median_us(lambda d=ds, a=ae: rules.decide(d, a), args.repeats):8.2f} us")
    watcher = RulesWatcher(ROOT / "dicom_rules" / "examples" / "ophthalmology.yaml", interval_s=0.0)
    print(f"watcher.poll (unchanged){'':13s} {median_us(watcher.poll, args.repeats):8.2f} us")
    _bench_explain()


def _bench_explain() -> None:
    from tests.conftest import FACES, make_vl_photo

    photos = sorted(FACES.glob("*.jpg"))
    if not photos:
        print("explain: skipped (../shared faces not present)")
        return
    rules = load_rules(ROOT / "dicom_rules" / "examples" / "orthodontics.yaml")
    ds = make_vl_photo(photos[0])
    ms = median_us(lambda: explain(ds, rules, calling_ae="ORTHO_CAM1"), 10) / 1000
    print(f"explain 1350x1350 JPEG photo{'':10s} {ms:8.2f} ms")


if __name__ == "__main__":
    main()
