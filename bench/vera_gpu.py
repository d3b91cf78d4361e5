"""Times VerA training steps and per-photo anonymization at 256 and 512 px, AMP on and off (random weights).

On CUDA:   .venv/bin/python bench/vera_gpu.py                      (256 and 512 px, AMP off/on)
On CPU:    .venv/bin/python bench/vera_gpu.py --tiny               (32 px smoke run; chosen automatically
                                                                    when no GPU is present)
Prints one JSON line per (resolution, amp) with seconds per training step (batch --batch) and seconds per
photo for a 2-photo joint inversion (--inv-steps steps) + keyed swap + render + composite.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from anonymizer.engines.vera.inversion import InversionConfig, invert, replace_identity  # noqa: E402
from anonymizer.engines.vera.model import VeraModel  # noqa: E402
from anonymizer.engines.vera.nets import EncoderConfig, SmallFaceEncoder  # noqa: E402
from anonymizer.engines.vera.parser import FaceParser, ParserConfig  # noqa: E402
from anonymizer.engines.vera.training.config import resolve, with_  # noqa: E402
from anonymizer.engines.vera.training.encoder import save_encoder  # noqa: E402
from anonymizer.engines.vera.training.train import build_nets, d_step, g_step  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_training(cfg, device: torch.device, amp: bool, steps: int) -> float:  # type: ignore[no-untyped-def]
    nets = build_nets(cfg, device)
    gen = torch.Generator().manual_seed(0)
    r = cfg.G.resolution
    real = torch.rand(cfg.batch, 3, r, r, device=device) * 2 - 1
    labels = torch.randint(0, cfg.G.num_classes, (cfg.batch, r, r), device=device)
    scalers = torch.amp.GradScaler(enabled=amp), torch.amp.GradScaler(enabled=amp)
    for step in range(steps + 2):  # two warm-up steps (one with R1)
        if step == 2:
            _sync(device)
            t0 = time.perf_counter()
        d_step(nets, cfg, real, labels, step, gen, scalers[1], amp, 1)
        g_step(nets, cfg, real, gen, scalers[0], amp, 1)
    _sync(device)
    return (time.perf_counter() - t0) / steps


def time_anonymization(cfg, device: torch.device, amp: bool, inv_steps: int, enc_path: Path) -> float:  # type: ignore[no-untyped-def]
    nets = build_nets(cfg, device)
    parser = FaceParser(ParserConfig(resolution=min(256, cfg.G.resolution))).to(device).eval()
    model = VeraModel(nets.G_ema, nets.head, nets.enc, parser, {}).to(device)
    r = cfg.G.resolution
    photos = torch.rand(2, 3, r, r, device=device) * 2 - 1
    inv = InversionConfig(steps=inv_steps, amp=amp)
    invert(model, photos, None, None, InversionConfig(steps=1, amp=amp))  # warm-up
    _sync(device)
    t0 = time.perf_counter()
    res = invert(model, photos, None, None, inv, shared=True)
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.float16, enabled=amp and device.type == "cuda"):
        rgb = model.G(replace_identity(model, res.latents, 1234, keep=(5,)), res.noise).rgb
        mask = (parser(photos).argmax(1, keepdim=True) == 5).float()
        _ = mask * photos + (1 - mask) * rgb.float()
    _sync(device)
    return (time.perf_counter() - t0) / 2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="32 px CPU smoke configuration")
    ap.add_argument("--resolutions", default="256,512")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--train-steps", type=int, default=10)
    ap.add_argument("--inv-steps", type=int, default=100)
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu":
        torch.set_num_threads(1)
        args.tiny = True
    runs = [("tiny", 32)] if args.tiny else [(res, int(res)) for res in args.resolutions.split(",")]
    if args.tiny:
        args.train_steps, args.inv_steps, args.batch = min(args.train_steps, 3), min(args.inv_steps, 5), 4
    with tempfile.TemporaryDirectory() as tmp:
        enc_path = Path(tmp) / "encoder.safetensors"
        save_encoder(SmallFaceEncoder(EncoderConfig()), enc_path, "random weights (timing only)")
        for preset, res in runs:
            for amp in (False, True) if device.type == "cuda" else (False,):
                cfg = resolve(preset, {"out_dir": tmp, "data": "none", "encoder": str(enc_path),
                                       "batch": args.batch, "amp": amp, "device": device.type})
                row = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
                       "resolution": res, "amp": amp, "batch": cfg.batch,
                       "train_s_per_step": round(time_training(cfg, device, amp, args.train_steps), 4),
                       "inv_steps": args.inv_steps,
                       "anonymize_s_per_photo": round(time_anonymization(with_(cfg, batch=2), device, amp,
                                                                         args.inv_steps, enc_path), 3)}
                if device.type == "cuda":
                    row["max_mem_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
                    torch.cuda.reset_peak_memory_stats()
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
