"""One privacy table from several ``eval_pixels.py --trace --out DIR`` runs that split the identities.

A whole-set run takes ~25 min on one core; two processes on disjoint ``--ids`` halve that, but each prints
collisions only among its own patients. This reads every run's ``outputs.npz`` (and one ``originals.npz``
for the gallery) and prints, per setting, what needs all outputs together: forwarded, linkage r1 / r5 against
every original, within the patient's sex, collisions between different patients, and sex kept.

    python bench/merge_runs.py /tmp/run-a /tmp/run-b [--faces ../shared/data/faces]
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

import face_quality as fq  # noqa: E402
from eval_pixels import FACES, _markdown, _rate, read_manifest, self_reported_sex  # noqa: E402


def gallery(originals: Path) -> dict[str, list[np.ndarray]]:
    """Every identity's original descriptors (neutral and smiling), as eval_pixels caches them."""
    with np.load(originals) as z:
        ids, descs = list(z["ids"]), z["descriptors"]
    out: dict[str, list[np.ndarray]] = defaultdict(list)
    for n, identity in enumerate(ids):
        out[str(identity)].extend([descs[2 * n], descs[2 * n + 1]])
    return dict(out)


def merged(runs: list[Path]) -> dict[str, dict[str, list]]:
    """Per setting: the runs' outputs (identity, descriptor), verified and sex-kept flags, in run order. A
    patient found in a later run replaces the earlier runs' outputs of that patient, so a rerun of a few
    patients joins a whole-set run as ``merge_runs.py WHOLE RERUN``."""
    cells: dict[str, dict[str, list]] = defaultdict(dict)  # setting -> patient -> rows
    for run in runs:
        with np.load(run / "outputs.npz") as z:
            for key in z.files:
                if not key.endswith("_ids"):
                    continue
                name = key[: -len("_ids")]
                sex_kept = z[f"{name}_sex_kept"] if f"{name}_sex_kept" in z.files else None
                fresh: dict[str, list] = defaultdict(list)
                for n, label in enumerate(str(i) for i in z[key]):
                    kept = None if sex_kept is None else sex_kept[n]
                    fresh[label].append((label, z[f"{name}_desc"][n], z[f"{name}_ok"][n], kept))
                cells[name].update(fresh)
    rows: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for name, patients in cells.items():
        for label, desc, ok, kept in (row for group in patients.values() for row in group):
            rows[name]["out_desc"].append((label, desc))
            rows[name]["verified"].append(ok)
            if kept is not None:
                rows[name]["sex_kept"].append(kept)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="eval_pixels --out directories (run with --trace)")
    parser.add_argument("--faces", type=Path, default=FACES)
    args = parser.parse_args()
    faces = gallery(args.runs[0] / "originals.npz")
    sexes = {i: self_reported_sex(row) for i, row in read_manifest(args.faces).items()}
    lines = []
    for name, col in merged(args.runs).items():
        ranks = fq.linkage_ranks(col["out_desc"], faces)
        same_sex = fq.same_sex_cells(col["out_desc"], faces, sexes)
        lines.append(
            (
                name,
                str(len(col["out_desc"])),
                _rate(col["verified"]),
                f"{_rate([r == 1 for r in ranks])} / {_rate([r <= 5 for r in ranks])}",
                same_sex[1],
                f"{100 * fq.collision_rate(col['out_desc']):.1f}%",
                _rate(col["sex_kept"]),
            )
        )
    print(f"# {len(args.runs)} runs merged; linkage gallery of {len(faces)} identities")
    _markdown(
        ("setting", "outputs", "forwarded", "linkage r1 / r5", "same-sex r1 / r5", "collisions", "sex kept"),
        lines,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
