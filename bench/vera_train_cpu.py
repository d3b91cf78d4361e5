"""Short CPU training run of every VerA part on the shared London faces (tiny resolution, minutes).

Stages (each skipped when its checkpoint exists under --out, unless --fresh):
  parser   : smp U-Net from scratch at 128 px on landmark-derived masks; per-region IoU on held-out identities
  encoder  : small CNN trained contrastively (same identity / mirror positives), then frozen
  gan      : generator + projection head + discriminator; losses logged, first vs last window compared
  engine   : inversion error before vs after, anonymization of a held-out identity pair through the engine

Run:  .venv/bin/python bench/vera_train_cpu.py --stages parser,encoder,gan,engine
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from anonymizer.engines.vera import data as vdata  # noqa: E402
from anonymizer.engines.vera import parser as vparser  # noqa: E402

FACES = ROOT.parent / "shared" / "data" / "faces"
HOLDOUT = 8


def stage_parser(out: Path, steps: int, results: dict) -> None:
    cfg = vparser.ParserConfig()
    cache = out / "london_landmarks.json"
    full = vdata.london_set(FACES, cfg.resolution, cache)
    train_ids, test_ids = vdata.split_identities(full.ids, HOLDOUT)
    train = vdata.london_set(FACES, cfg.resolution, cache, train_ids)
    test = vdata.london_set(FACES, cfg.resolution, cache, test_ids)
    t0 = time.monotonic()
    parser, losses = vparser.train_parser(cfg, train, steps)
    iou = vparser.per_class_iou(vparser.predict(parser, test.images), test.labels)
    data = f"london_set {len(train.ids)} photos, masks from dlib landmarks"
    vparser.save_parser(parser, out / "parser.safetensors", data)
    results["parser"] = {
        "steps": steps, "train_s": round(time.monotonic() - t0, 1), "train_photos": len(train.ids),
        "heldout_photos": len(test.ids),
        "loss_first50": sum(losses[:50]) / 50, "loss_last50": sum(losses[-50:]) / 50,
        "heldout_iou": {k: round(v, 4) for k, v in iou.items()},
    }
    print(json.dumps(results["parser"], indent=1), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "vera")
    ap.add_argument("--stages", default="parser,encoder,gan,engine")
    ap.add_argument("--parser-steps", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    results_file = args.out / "results.json"
    results = json.loads(results_file.read_text()) if results_file.exists() else {}
    stages = args.stages.split(",")
    if "parser" in stages:
        stage_parser(args.out, args.parser_steps, results)
    results_file.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
