"""Short CPU training run of every VerA part on the shared London faces (tiny resolution, minutes).

Stages (each skipped when its checkpoint exists under --out, unless --fresh):
  parser   : smp U-Net from scratch at 256 px (Dice + CE) on landmark-derived masks; per-region IoU on
             held-out identities (about 45 min on one CPU thread at 2000 steps)
  encoder  : small CNN trained contrastively (same identity / mirror positives), then frozen
  gan      : generator + projection head + discriminator; losses logged, first vs last window compared
  engine   : inversion error before vs after, anonymization of a held-out identity pair through the engine

Run:  .venv/bin/python bench/vera_train_cpu.py --stages parser,encoder,gan,engine
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from anonymizer.engines.vera import parser as vparser  # noqa: E402
from anonymizer.engines.vera.training import data as vdata  # noqa: E402
from anonymizer.engines.vera.training import parser as ptrain  # noqa: E402

FACES = ROOT.parent / "shared" / "data" / "faces"
HOLDOUT = 8


def stage_parser(out: Path, steps: int, results: dict, encoder: str, aug: float, res: int = 128,
                 dice: float = 0.0, tag: str = "") -> None:
    decoder = (128, 64, 32, 16) if encoder.startswith("resnet") else (64, 48, 32, 16)
    cfg = vparser.ParserConfig(encoder=encoder, decoder=decoder, resolution=res)
    cache = out / "london_landmarks.json"
    full = vdata.london_set(FACES, cfg.resolution, cache)
    train_ids, test_ids = vdata.split_identities(full.ids, HOLDOUT)
    train = vdata.london_set(FACES, cfg.resolution, cache, train_ids)
    test = vdata.london_set(FACES, cfg.resolution, cache, test_ids)
    t0 = time.monotonic()
    parser, losses = ptrain.train_parser(cfg, train, steps, aug=aug, dice=dice)
    iou = vparser.per_class_iou(vparser.predict(parser, test.images, flip_tta=False), test.labels)
    data = f"london_set {len(train.ids)} photos, masks from dlib landmarks"
    ptrain.save_parser(parser, out / f"parser_{encoder}{tag}.safetensors", data)
    results[f"parser{tag}"] = {
        "encoder": encoder, "resolution": res, "aug": aug, "dice": dice, "steps": steps,
        "train_s": round(time.monotonic() - t0, 1),
        "train_photos": len(train.ids),
        "heldout_photos": len(test.ids),
        "loss_first50": sum(losses[:50]) / 50, "loss_last50": sum(losses[-50:]) / 50,
        "heldout_iou": {k: round(v, 4) for k, v in iou.items()},
    }
    print(json.dumps(results[f"parser{tag}"], indent=1), flush=True)


def stage_parser_eval(out: Path, results: dict, parser_file: str, tag: str = "") -> None:
    """Held-out (and training-set) IoU of the saved parser, with and without mirror test-time augmentation."""
    cache = out / "london_landmarks.json"
    parser = vparser.load_parser(out / parser_file)
    r = parser.cfg.resolution
    full = vdata.london_set(FACES, r, cache)
    train_ids, test_ids = vdata.split_identities(full.ids, HOLDOUT)
    report = {}
    for name, ids in (("heldout", test_ids), ("train", train_ids)):
        faces = vdata.london_set(FACES, r, cache, ids)
        for tta in (False, True):
            iou = vparser.per_class_iou(vparser.predict(parser, faces.images, flip_tta=tta), faces.labels)
            report[f"{name}_iou{'_flip_tta' if tta else ''}"] = {k: round(v, 3) for k, v in iou.items()}
    results[f"parser_eval{tag}"] = {"parser": parser_file, **report}
    print(json.dumps(report, indent=1), flush=True)


def stage_encoder(out: Path, steps: int, results: dict) -> None:
    from anonymizer.engines.vera.nets import EncoderConfig
    from anonymizer.engines.vera.training.encoder import save_encoder, train_encoder

    cfg = EncoderConfig(embed_dim=64, width=16, input_res=64)
    full = vdata.london_set(FACES, cfg.input_res, out / "london_landmarks.json")
    train_ids, test_ids = vdata.split_identities(full.ids, HOLDOUT)
    keep = [i for i, ident in enumerate(full.ids) if ident in train_ids]
    train = vdata.FaceSet(full.images[keep], full.labels[keep], [full.ids[i] for i in keep])
    enc, losses = train_encoder(cfg, train, steps)
    save_encoder(enc, out / "encoder.safetensors", f"london_set {len(train.ids)} photos, contrastive")
    results["encoder"] = {
        "steps": steps, "loss_first20": _mean(losses[:20]), "loss_last20": _mean(losses[-20:]),
        "heldout_pair_top1": _pair_top1(enc, full, test_ids),
    }
    print(json.dumps(results["encoder"], indent=1), flush=True)


def _mean(xs: list[float]) -> float:
    return round(sum(xs) / max(len(xs), 1), 4)


def _pair_top1(enc: torch.nn.Module, full: vdata.FaceSet, ids: set[str]) -> float:
    """Held-out identities: share of neutral photos whose nearest smiling photo is the same person."""
    idx = [i for i, ident in enumerate(full.ids) if ident in ids]
    with torch.no_grad():
        emb = torch.nn.functional.normalize(enc(full.images[idx]), dim=1)
    names = [full.ids[i] for i in idx]
    sim = emb @ emb.T
    sim.fill_diagonal_(-2)
    hits = [names[int(sim[i].argmax())] == names[i] for i in range(len(idx))]
    return round(sum(hits) / len(hits), 3)


def stage_gan(out: Path, steps: int, preset: str, results: dict) -> None:
    from anonymizer.engines.vera.training.config import resolve
    from anonymizer.engines.vera.training.train import train

    run = out / "gan"
    run.mkdir(exist_ok=True)
    (run / "london_landmarks.json").write_bytes((out / "london_landmarks.json").read_bytes())
    cfg = resolve(preset, {
        "out_dir": str(run), "data": f"london:{FACES}", "encoder": str(out / "encoder.safetensors"),
        "steps": steps, "batch": 8, "ckpt_every": max(steps // 2, 1), "log_every": 25, "holdout": HOLDOUT,
        "resume": False, "ema_kimg": 0.2,
    })
    t0 = time.monotonic()
    hist = train(cfg)
    window = max(len(hist) // 10, 1)
    summary = {
        k: {"first": _mean([h[k] for h in hist[:window]]), "last": _mean([h[k] for h in hist[-window:]])}
        for k in ("d_loss", "g_adv", "mirror", "recode", "mask_entropy") if k in hist[0]
    }
    results["gan"] = {"preset": preset, "resolution": cfg.G.resolution, "steps": steps,
                      "train_s": round(time.monotonic() - t0, 1), "loss_first_vs_last_10pct": summary}
    print(json.dumps(results["gan"], indent=1), flush=True)


def _heldout_pair(out: Path) -> tuple[str, list]:
    from anonymizer.engines.vera import faceprep

    photos = faceprep.landmark_cache(FACES / "london_set", out / "london_landmarks.json")
    ids = sorted({p.path.stem.split("_")[0] for p in photos})
    ident = ids[-1]  # held out of every training stage (split_identities keeps the last HOLDOUT out)
    return ident, [faceprep.read_rgb(p.path) for p in photos if p.path.stem.split("_")[0] == ident]


def _reconstruction(model, images: list, steps: int) -> dict:  # type: ignore[no-untyped-def]
    from anonymizer.engines.vera import faceprep
    from anonymizer.engines.vera.inversion import InversionConfig, invert
    from anonymizer.engines.vera.tensors import to_tensor

    r = model.G.cfg.resolution
    crops = [to_tensor(faceprep.align(img, faceprep.detect_landmarks(img), r)[0]) for img in images]
    target = torch.stack(crops)
    out = {}
    for name, shared in (("joint", True), ("single", False)):
        res = invert(model, target, None, None, InversionConfig(steps=steps), shared=shared)
        out[name] = {"mse_before": round(res.mse_before, 4), "mse_after": round(res.mse_after, 4),
                     "psnr_before_db": round(10 * math.log10(4 / res.mse_before), 2),
                     "psnr_after_db": round(10 * math.log10(4 / res.mse_after), 2)}
    return out


def _mouth_locality(G: torch.nn.Module) -> dict:  # type: ignore[type-arg]
    """Swap only the mouth codes of 16 samples: share of |Δrgb| inside the generated mouth mask (±2 px)."""
    from anonymizer.engines.vera.classes import CLASS_INDEX
    from anonymizer.engines.vera.generator import Latents

    k = CLASS_INDEX["mouth"]
    gen = torch.Generator().manual_seed(5)
    lat, new = G.sample_latents(16, gen, truncation=0.7), G.sample_latents(16, gen, truncation=0.7)
    shape, tex = lat.shape.clone(), lat.texture.clone()
    shape[:, k], tex[:, k] = new.shape[:, k], new.texture[:, k]
    noise = [torch.zeros(16, 1, h, w) for h, w in G.noise_shapes()]
    with torch.no_grad():
        a, b = G(lat, noise), G(Latents(shape, tex, lat.high), noise)
    delta = (a.rgb - b.rgb).abs().sum(1)
    hard = ((a.seg.argmax(1) == k) | (b.seg.argmax(1) == k)).float()[:, None]  # generated mouth (argmax)
    soft = torch.maximum(a.coarse[:, k], b.coarse[:, k])[:, None]
    soft = (torch.nn.functional.interpolate(soft, size=delta.shape[-2:], mode="bilinear") > 0.1).float()
    out = {}
    for name, mask in (("argmax_mask", hard), ("soft_mask_p>0.1", soft)):
        mask = torch.nn.functional.max_pool2d(mask, 5, 1, 2)[:, 0]  # ±2 px: the render net's reach
        out[name] = {"change_inside": round(float((delta * mask).sum() / delta.sum()), 3),
                     "mask_area": round(float(mask.mean()), 3)}
    return out


def _save_strip(path: Path, before: list, after: list) -> None:
    import cv2

    tiles = [cv2.resize(img, (320, 320), interpolation=cv2.INTER_AREA) for img in before]
    tiles += [cv2.resize(img, (320, 320), interpolation=cv2.INTER_AREA) for img in after if img is not None]
    cv2.imwrite(str(path), cv2.cvtColor(cv2.hconcat(tiles), cv2.COLOR_RGB2BGR))


def stage_engine(out: Path, inv_steps: int, results: dict, parser_file: str, gan_dir: str = "gan") -> None:
    import numpy as np

    from anonymizer.engines.base import create_engine
    from anonymizer.faces.pipeline import run_group
    from anonymizer.plans import Region

    bundle = out / gan_dir / "vera.safetensors"
    engine = create_engine("vera", {"checkpoint": str(bundle), "parser": str(out / parser_file),
                                    "steps": inv_steps, "device": "cpu"})
    ident, images = _heldout_pair(out)
    recon = _reconstruction(engine.model, images, inv_steps)
    t0 = time.monotonic()
    photos = run_group(images, engine, identity_seed=20261126, preserve=(Region.MOUTH,))
    seconds = time.monotonic() - t0
    changed = [float(np.abs(p.image.astype(int) - img.astype(int)).mean()) if p.image is not None else None
               for p, img in zip(photos, images, strict=True)]
    _save_strip(out / "engine_pair.jpg", images, [p.image for p in photos])
    results["engine"] = {
        "heldout_identity": ident, "inversion_steps": inv_steps, "reconstruction": recon,
        "mouth_code_locality": _mouth_locality(engine.model.G),
        "pipeline_seconds_for_pair": round(seconds, 1), "engine_stats": engine.last_stats,
        "photos": [{"ok": p.ok, "reason": p.reason, "mean_abs_change": c} for p, c in zip(photos, changed,
                                                                                           strict=True)],
    }
    print(json.dumps(results["engine"], indent=1), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "vera")
    ap.add_argument("--stages", default="parser,encoder,gan,engine")
    ap.add_argument("--parser-steps", type=int, default=2000)
    ap.add_argument("--parser-encoder", default="mobilenet_v2", help="smp encoder of the parser")
    ap.add_argument("--parser-aug", type=float, default=0.7, help="augmentation strength")
    ap.add_argument("--parser-res", type=int, default=256, help="parser input side (px)")
    ap.add_argument("--parser-dice", type=float, default=1.0, help="weight of Dice added to cross-entropy")
    ap.add_argument("--parser-tag", default="", help="suffix of the parser checkpoint and results files")
    ap.add_argument("--parser-file", default="parser_mobilenet_v2.safetensors",
                    help="parser checkpoint (under --out) used by parser-eval and engine")
    ap.add_argument("--encoder-steps", type=int, default=300)
    ap.add_argument("--gan-steps", type=int, default=600)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--inv-steps", type=int, default=200)
    ap.add_argument("--gan-dir", default="gan", help="run folder (under --out) of the engine's bundle")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    stages = args.stages.split(",")
    if "parser" in stages:
        stage_parser(args.out, args.parser_steps, results, args.parser_encoder, args.parser_aug,
                     args.parser_res, args.parser_dice, args.parser_tag)
    if "parser-eval" in stages:
        stage_parser_eval(args.out, results, args.parser_file, args.parser_tag)
    if "encoder" in stages:
        stage_encoder(args.out, args.encoder_steps, results)
    if "gan" in stages:
        stage_gan(args.out, args.gan_steps, args.preset, results)
    if "engine" in stages:
        stage_engine(args.out, args.inv_steps, results, args.parser_file, args.gan_dir)
    for stage, value in results.items():  # one file per stage: stages may run in separate processes
        (args.out / f"results_{stage}.json").write_text(json.dumps(value, indent=1))


if __name__ == "__main__":
    main()
