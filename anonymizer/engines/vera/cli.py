"""``vera-gateway vera train | parser-train | encoder-train | invert`` (registered by gateway.cli's hook).

Heavy imports (torch, dlib, smp) happen inside the commands, so other CLI commands stay fast.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    vera = subparsers.add_parser("vera", help="VerA neural engine: train, parser-train, invert, ...")
    sub = vera.add_subparsers(dest="vera_command", required=True)
    _add_train(sub)
    _add_parser_train(sub)
    _add_encoder_train(sub)
    _add_invert(sub)
    return vera


def _add_train(sub: Any) -> None:
    p = sub.add_parser("train", help="train the generator (single process or under torchrun)")
    p.add_argument("--preset", default="tiny", help="tiny | small | 256 | 512")
    p.add_argument("--out", required=True, type=Path, help="run folder (config, logs, checkpoints)")
    p.add_argument("--data", required=True, help="london:<faces root> or an aligned-face folder")
    p.add_argument("--encoder", required=True, help="frozen high-level encoder file")
    p.add_argument("--parser", default="", help="parser checkpoint (masks for folders without masks)")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--set", action="append", default=[], metavar="KEY=JSON", help="any TrainConfig field")
    p.add_argument("--dry-run", action="store_true", help="resolve, print and save the config; do not train")
    p.set_defaults(func=cmd_train)


def _add_parser_train(sub: Any) -> None:
    p = sub.add_parser("parser-train", help="train the face parser from scratch on the London set")
    p.add_argument("--faces", required=True, type=Path, help="root holding london_set/")
    p.add_argument("--out", required=True, type=Path, help="parser checkpoint (.safetensors)")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--resolution", type=int, default=256, help="parser input side (thin eyes need 256 px)")
    p.add_argument("--dice", type=float, default=1.0, help="weight of soft Dice added to cross-entropy")
    p.add_argument("--aug", type=float, default=0.7, help="augmentation strength (0 = none)")
    p.add_argument("--holdout", type=int, default=8, help="identities held out for the IoU report")
    p.set_defaults(func=cmd_parser_train)


def _add_encoder_train(sub: Any) -> None:
    p = sub.add_parser("encoder-train", help="train the small contrastive encoder (stand-in for FaceNet)")
    p.add_argument("--faces", required=True, type=Path, help="root holding london_set/")
    p.add_argument("--out", required=True, type=Path, help="encoder file (.safetensors)")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--holdout", type=int, default=8)
    p.set_defaults(func=cmd_encoder_train)


def _add_invert(sub: Any) -> None:
    p = sub.add_parser("invert", help="debug: invert photos jointly, write reconstruction, masks, anonymized")
    p.add_argument("--checkpoint", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path, help="output folder for PNGs")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--seed", type=int, default=1, help="identity seed for the anonymized render")
    p.add_argument("photos", nargs="+", type=Path, help="photos of one person")
    p.set_defaults(func=cmd_invert)


def _parse_sets(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def cmd_train(args: argparse.Namespace) -> int:
    from anonymizer.engines.vera.training.config import resolve
    from anonymizer.engines.vera.training.train import train

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    overrides = {"out_dir": str(args.out), "data": args.data, "encoder": args.encoder, "parser": args.parser,
                 "steps": args.steps, "batch": args.batch, "dry_run": args.dry_run, **_parse_sets(args.set)}
    train(resolve(args.preset, overrides))
    return 0


def _london_split(faces: Path, resolution: int, holdout: int, cache: Path) -> tuple[Any, Any]:
    from anonymizer.engines.vera.training import data as vdata

    full = vdata.london_set(faces, resolution, cache)
    train_ids, test_ids = vdata.split_identities(full.ids, holdout)
    train = vdata.london_set(faces, resolution, cache, train_ids)
    return train, vdata.london_set(faces, resolution, cache, test_ids)


def cmd_parser_train(args: argparse.Namespace) -> int:
    from anonymizer.engines.vera import parser as vparser
    from anonymizer.engines.vera.training import parser as ptrain

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    cfg = vparser.ParserConfig(resolution=args.resolution)
    cache = args.out.parent / "london_landmarks.json"
    train, test = _london_split(args.faces, cfg.resolution, args.holdout, cache)
    parser, _ = ptrain.train_parser(cfg, train, args.steps, aug=args.aug, dice=args.dice)
    ptrain.save_parser(parser, args.out, f"london_set {len(train.ids)} photos, landmark masks")
    iou = vparser.per_class_iou(vparser.predict(parser, test.images), test.labels)
    print(json.dumps({"heldout_iou": iou}, indent=1))
    return 0


def cmd_encoder_train(args: argparse.Namespace) -> int:
    from anonymizer.engines.vera.nets import EncoderConfig
    from anonymizer.engines.vera.training.encoder import save_encoder, train_encoder

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    cfg = EncoderConfig()
    cache = args.out.parent / "london_landmarks.json"
    train, _ = _london_split(args.faces, cfg.input_res, args.holdout, cache)
    enc, _ = train_encoder(cfg, train, args.steps)
    save_encoder(enc, args.out, f"london_set {len(train.ids)} photos, identity-contrastive")
    return 0


def cmd_invert(args: argparse.Namespace) -> int:
    import cv2
    import torch

    from anonymizer.engines.vera import faceprep
    from anonymizer.engines.vera.inversion import InversionConfig, invert, replace_identity
    from anonymizer.engines.vera.model import load_vera
    from anonymizer.engines.vera.tensors import to_tensor, to_uint8

    model = load_vera(args.checkpoint)
    r = model.G.cfg.resolution
    crops = []
    for photo in args.photos:
        image = faceprep.read_rgb(photo)
        lm = faceprep.detect_landmarks(image)
        if lm is None:
            print(f"no face found in {photo.name}")
            return 2
        crops.append(to_tensor(faceprep.align(image, lm, r)[0]))
    target = torch.stack(crops)
    res = invert(model, target, None, None, InversionConfig(steps=args.steps), shared=True)
    with torch.no_grad():
        recon = model.G(res.latents, res.noise)
        anon = model.G(replace_identity(model, res.latents, args.seed, ()), res.noise)
    args.out.mkdir(parents=True, exist_ok=True)
    for i in range(len(crops)):
        seg = (recon.seg[i].argmax(0).byte() * 25).numpy()
        row = [to_uint8(target[i]), to_uint8(recon.rgb[i]), cv2.cvtColor(seg, cv2.COLOR_GRAY2RGB),
               to_uint8(anon.rgb[i])]
        cv2.imwrite(str(args.out / f"photo{i}_target_recon_mask_anon.png"),
                    cv2.cvtColor(cv2.hconcat(row), cv2.COLOR_RGB2BGR))
    print(json.dumps({"mse_before": res.mse_before, "mse_after": res.mse_after}))
    return 0
