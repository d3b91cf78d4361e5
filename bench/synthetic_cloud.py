"""Write a synthetic cloud for ``spread_pick_cloud`` (issue-11c10) from an eval_pixels run's outputs.npz.

The cloud is the engine's own outputs for the bank's identities, made leave-one-out (``--folds 39``), as the
shipped bank would carry them: ``ids`` (the identity of each output) and ``desc`` (its dlib descriptor).
Only outputs that verification forwarded are kept.

    python bench/synthetic_cloud.py RUN/outputs.npz --setting nothing --out cloud_nothing.npz
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def cloud(outputs: Path, setting: str, prefix: str = "london_") -> tuple[np.ndarray, np.ndarray]:
    """(ids, desc) of one setting's forwarded outputs, the ids named as the bank names its identities
    (``prefix`` + the bench's id)."""
    with np.load(outputs) as z:
        ids, desc, ok = z[f"{setting}_ids"], z[f"{setting}_desc"], z[f"{setting}_ok"].astype(bool)
    return np.array([prefix + str(i) for i in ids[ok]]), desc[ok].astype(np.float32)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outputs", type=Path)
    parser.add_argument("--setting", default="nothing")
    parser.add_argument("--prefix", default="london_", help="how the bank names an identity before its id")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    ids, desc = cloud(args.outputs, args.setting, args.prefix)
    np.savez(args.out, ids=ids, desc=desc)
    print(f"{len(ids)} outputs of {len(set(ids.tolist()))} identities -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
