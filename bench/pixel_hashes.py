"""Hashes of the pixel stage's output pixels, to show that a speed change left every output byte-identical.

Run it on two trees (each with its own checkout first on the path) and compare the two listings:

    PYTHONPATH=$PWD .venv/bin/python bench/pixel_hashes.py > /tmp/mine.txt
    (cd ../main && PYTHONPATH=$PWD ../main/.venv/bin/python bench/pixel_hashes.py) > /tmp/main.txt
    diff /tmp/main.txt /tmp/mine.txt

It hashes the 12 MP timing photo of ``pixel_timing.py`` (mouth kept) for ``--seeds`` identity seeds, a few
London-set photos in every setting (nothing, mouth, nose, eyes kept) and one patient's two photos as a group.
A quarantined output prints its reason instead of a hash.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from anonymizer import pixel_stage  # noqa: E402
from anonymizer.outcomes import Ok, Outcome  # noqa: E402
from anonymizer.photo_dicom import PhotoContext, jpeg_to_dataset  # noqa: E402
from anonymizer.plans import PixelPlan, Region  # noqa: E402
from bench.pixel_timing import PHOTO, twelve_megapixel, verify_descriptor_settings  # noqa: E402

FACES = PHOTO.parent
SETTINGS = ((), (Region.MOUTH,), (Region.NOSE,), (Region.EYES,))


def digest(outcome: Outcome) -> str:
    if isinstance(outcome, Ok):
        return hashlib.sha256(outcome.dataset.PixelData).hexdigest()[:16]
    return f"quarantined:{getattr(outcome, 'reason', outcome)}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bank", type=Path, default=REPO / "bench" / "out" / "bank_fold0.npz")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--photos", nargs="*", default=["001_03", "004_08", "008_03", "013_08"])
    parser.add_argument("--pair", default="004", help="identity whose _03 and _08 photos form one group")
    parser.add_argument(
        "--verify-descriptor", choices=("dlib", "torch"), help="who computes verification's descriptors"
    )
    parser.add_argument(
        "--engine-setting", nargs="*", default=[], metavar="NAME=VALUE", help="as pixel_timing.py takes them"
    )
    args = parser.parse_args()
    engine = None
    if args.engine_setting:
        from bench.eval_pixels import engine_overrides

        engine = engine_overrides(args.engine_setting)
    pixel_stage.configure(verify_descriptor_settings(args.bank, args.verify_descriptor, engine))
    big = jpeg_to_dataset(twelve_megapixel(PHOTO), PhotoContext("TIMING"))
    mouth = PixelPlan(preserve=(Region.MOUTH,))
    for seed in range(args.seeds):
        (outcome,) = pixel_stage.anonymize_group([big], mouth, seed)
        print(f"12MP mouth seed {seed} {digest(outcome)}", flush=True)
    for name in args.photos:
        ds = jpeg_to_dataset((FACES / f"{name}.jpg").read_bytes(), PhotoContext(f"P{name}"))
        for keep in SETTINGS:
            label = "+".join(str(r) for r in keep) or "nothing"
            (outcome,) = pixel_stage.anonymize_group([ds], PixelPlan(preserve=keep), 7)
            print(f"{name} {label} {digest(outcome)}", flush=True)
    pair = [
        jpeg_to_dataset((FACES / f"{args.pair}_{e}.jpg").read_bytes(), PhotoContext(f"P{args.pair}"))
        for e in ("03", "08")
    ]
    outcomes = pixel_stage.anonymize_group(pair, PixelPlan(preserve=(Region.NOSE,)), 11)
    print(f"pair {args.pair} nose {[digest(o) for o in outcomes]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
