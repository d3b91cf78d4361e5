"""The VerA training loop: a function of a resolved :class:`TrainConfig`.

Non-saturating adversarial loss with lazy R1 on an image + segmentation discriminator, the mirroring
contrastive objective (InfoNCE: image vs its horizontal mirror through the projection head) and the
re-encoding objective (a generated image re-encoded lands on its own high-level code), EMA generator,
AMP on CUDA, periodic checkpoints and resume. Multi-GPU through ``torchrun``: gradients are averaged
across processes with all-reduce after every backward (data parallel), rank 0 writes.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F

from anonymizer.engines.vera.checkpoint import load_into, read_checked, save_modules
from anonymizer.engines.vera.device import pick_device
from anonymizer.engines.vera.generator import Generator, GenOutput, Latents
from anonymizer.engines.vera.model import save_vera
from anonymizer.engines.vera.nets import ProjectionHead, load_frozen_encoder
from anonymizer.engines.vera.parser import load_parser
from anonymizer.engines.vera.training import data as vdata
from anonymizer.engines.vera.training.config import TrainConfig
from anonymizer.engines.vera.training.discriminator import Discriminator
from anonymizer.engines.vera.training.losses import info_nce, r1_penalty

log = logging.getLogger(__name__)


@dataclass
class Nets:
    G:     Generator
    G_ema: Generator
    head:  ProjectionHead
    D:     Discriminator
    enc:   torch.nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer


def _dist_setup(cfg: TrainConfig) -> tuple[int, int, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, pick_device(cfg.device)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(cfg.device)
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world, device


def _all_reduce_grads(params: list[torch.nn.Parameter], world: int) -> None:
    if world == 1:
        return
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= world


def _real_batches(cfg: TrainConfig, rank: int, world: int, device: torch.device) -> Iterator[tuple]:
    """Endless (images [B,3,R,R], labels [B,R,R]) batches; London set in memory or an aligned folder."""
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + rank)
    r = cfg.G.resolution
    if cfg.data.startswith("london:"):
        root = Path(cfg.data.split(":", 1)[1])
        cache = Path(cfg.out_dir) / "london_landmarks.json"
        full = vdata.london_set(root, r, cache)
        train_ids, _ = vdata.split_identities(full.ids, cfg.holdout)
        keep = torch.tensor([i in train_ids for i in full.ids])
        images, labels = full.images[keep], full.labels[keep]
        while True:
            idx = torch.randint(len(images), (cfg.batch,), generator=gen)
            x, y = vdata.augment(images[idx], labels[idx], gen, strength=0.3)
            yield x.to(device), y.to(device)
    ds = vdata.AlignedFolder(Path(cfg.data), r)
    sampler = torch.utils.data.DistributedSampler(ds, world, rank, seed=cfg.seed) if world > 1 else None
    loader = torch.utils.data.DataLoader(
        ds, cfg.batch, shuffle=sampler is None, sampler=sampler, drop_last=True,
        num_workers=min(cfg.workers, os.cpu_count() or 1), persistent_workers=cfg.workers > 0,
        generator=gen,
    )
    epoch = 0
    while True:
        if sampler is not None:
            sampler.set_epoch(epoch)
        for x, y in loader:
            yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        epoch += 1


def _fill_labels(labels: torch.Tensor, images: torch.Tensor, parser: torch.nn.Module | None) -> torch.Tensor:
    """FFHQ-layout batches have no masks (-1): take the parser's prediction instead."""
    if (labels >= 0).all():
        return labels
    if parser is None:
        raise ValueError("training images without masks need a parser checkpoint (config.parser)")
    with torch.no_grad():
        pred = parser(images).argmax(1)
    return torch.where(labels >= 0, labels, pred)


def build_nets(cfg: TrainConfig, device: torch.device) -> Nets:
    torch.manual_seed(cfg.seed)
    enc, embed_dim = load_frozen_encoder(Path(cfg.encoder))
    G = Generator(cfg.G).to(device)
    head = ProjectionHead(embed_dim, cfg.G.hl_dim).to(device)
    D = Discriminator(cfg.D).to(device)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    c = cfg.r1_every / (cfg.r1_every + 1)
    opt_g = torch.optim.Adam(list(G.parameters()) + list(head.parameters()), lr=cfg.lr_g, betas=(0.0, 0.99))
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr_d * c, betas=(0.0, 0.99**c))
    return Nets(G, G_ema, head, D, enc.to(device), opt_g, opt_d)


def _seg_prob(labels: torch.Tensor, k: int) -> torch.Tensor:
    return F.one_hot(labels.clamp(min=0), k).permute(0, 3, 1, 2).float()  # [B, K, R, R]


def _high_codes(nets: Nets, real: torch.Tensor, frac: float, gen: torch.Generator) -> torch.Tensor:
    """High-level codes for fakes: the head's codes of real images (share ``frac``) or random unit ones."""
    b, d = real.shape[0], nets.G.cfg.hl_dim
    with torch.no_grad():
        from_real = nets.head(nets.enc(real))
    rand = F.normalize(torch.randn(b, d, generator=gen).to(real.device), dim=1)
    pick = (torch.rand(b, generator=gen) < frac).to(real.device)[:, None]
    return torch.where(pick, from_real, rand)  # [B, hl]


def d_step(nets: Nets, cfg: TrainConfig, real: torch.Tensor, labels: torch.Tensor, step: int,
           gen: torch.Generator, scaler: torch.amp.GradScaler, amp: bool, world: int) -> dict[str, float]:
    k = cfg.G.num_classes
    with torch.autocast(real.device.type, dtype=torch.float16, enabled=amp):
        with torch.no_grad():
            high = _high_codes(nets, real, cfg.real_high_frac, gen)
            fake = nets.G(nets.G.sample_latents(real.shape[0], gen, high))
        loss = F.softplus(nets.D(fake.rgb, fake.seg.softmax(1))).mean()
        loss = loss + F.softplus(-nets.D(real, _seg_prob(labels, k))).mean()
    stats = {"d_loss": float(loss.detach())}
    if step % cfg.r1_every == 0:
        r_img = real.detach().requires_grad_(True)
        r_seg = _seg_prob(labels, k).requires_grad_(True)
        r1 = r1_penalty(nets.D(r_img, r_seg), [r_img, r_seg])
        loss = loss + r1 * (cfg.r1_gamma / 2) * cfg.r1_every
        stats["r1"] = float(r1.detach())
    nets.opt_d.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    _all_reduce_grads(list(nets.D.parameters()), world)
    scaler.step(nets.opt_d)
    scaler.update()
    return stats


def g_step(nets: Nets, cfg: TrainConfig, real: torch.Tensor, gen: torch.Generator,
           scaler: torch.amp.GradScaler, amp: bool, world: int,
           parser: torch.nn.Module | None = None) -> dict[str, float]:
    with torch.autocast(real.device.type, dtype=torch.float16, enabled=amp):
        lat = nets.G.sample_latents(real.shape[0], gen, _high_codes(nets, real, cfg.real_high_frac, gen))
        noise = [torch.randn(real.shape[0], 1, h, w, generator=gen).to(real.device)
                 for h, w in nets.G.noise_shapes()]
        fake = nets.G(lat, noise)
        adv = F.softplus(-nets.D(fake.rgb, fake.seg.softmax(1))).mean()
        e_real = nets.enc(real)
        mirror = info_nce(nets.head(e_real), nets.head(nets.enc(real.flip(3))))
        recode = info_nce(nets.head(nets.enc(fake.rgb)), lat.high)
        entropy = -(fake.coarse.float() * torch.log(fake.coarse.float() + 1e-8)).sum(1).mean()
        loss = adv + cfg.w_mirror * mirror + cfg.w_recode * recode + cfg.w_mask_entropy * entropy
        if cfg.w_seg_consist > 0 and parser is not None:  # generated mask agrees with the parser's reading
            with torch.no_grad():
                seen = parser(fake.rgb.float()).argmax(1)
            loss = loss + cfg.w_seg_consist * F.cross_entropy(fake.seg.float(), seen)
        local = locality_loss(nets.G, lat, fake, noise, gen) if cfg.w_locality > 0 else torch.zeros(())
        loss = loss + cfg.w_locality * local
    nets.opt_g.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    _all_reduce_grads(list(nets.G.parameters()) + list(nets.head.parameters()), world)
    scaler.step(nets.opt_g)
    scaler.update()
    with torch.no_grad():  # running mean of w for truncation
        w = torch.stack([lat.shape, lat.texture], 2).float().mean(0)
        nets.G.w_avg.lerp_(w, 0.005)
    return {"g_adv": float(adv.detach()), "mirror": float(mirror.detach()), "recode": float(recode.detach()),
            "mask_entropy": float(entropy.detach()), "locality": float(local.detach())}


def locality_loss(G: Generator, lat: Latents, fake: GenOutput, noise: list[torch.Tensor],
                  gen: torch.Generator) -> torch.Tensor:
    """Swap one random class's shape+texture codes per sample; penalise RGB change outside that class's
    (dilated) coarse mask, so each region's codes act only inside their region."""
    b, k = lat.shape.shape[:2]
    pick = F.one_hot(torch.randint(k, (b,), generator=gen), k).bool().to(lat.shape.device)[:, :, None]
    new = G.sample_latents(b, gen, high=lat.high)
    edited = Latents(torch.where(pick, new.shape, lat.shape), torch.where(pick, new.texture, lat.texture),
                     lat.high)
    swapped = G(edited, noise)
    prob = torch.maximum(fake.coarse, swapped.coarse)[pick[:, :, 0]][:, None]  # [B, 1, c, c]
    side = fake.rgb.shape[-1]
    prob = F.interpolate(prob.float(), size=(side, side), mode="bilinear", align_corners=False)
    inside = F.max_pool2d(prob, 5, 1, 2)  # [B, 1, R, R], ±2 px for the render net's reach
    return ((swapped.rgb - fake.rgb).abs().float() * (1 - inside)).mean()


@torch.no_grad()
def _ema_update(nets: Nets, cfg: TrainConfig, world: int) -> None:
    beta = 0.5 ** (cfg.batch * world / max(cfg.ema_kimg * 1000, 1e-8))
    for p_ema, p in zip(nets.G_ema.parameters(), nets.G.parameters(), strict=True):
        p_ema.lerp_(p, 1 - beta)
    for b_ema, b in zip(nets.G_ema.buffers(), nets.G.buffers(), strict=True):
        b_ema.copy_(b)


def _optimizer_tensors(opt: torch.optim.Optimizer, prefix: str) -> tuple[dict[str, torch.Tensor], list]:
    state = opt.state_dict()
    tensors = {f"{prefix}.{i}.{k}": v if torch.is_tensor(v) else torch.tensor(v)
               for i, s in state["state"].items() for k, v in s.items()}
    return tensors, state["param_groups"]


def _load_optimizer(
    opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], prefix: str, groups: list
) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith(prefix + "."):
            idx, name = key[len(prefix) + 1 :].split(".", 1)
            state.setdefault(int(idx), {})[name] = value
    opt.load_state_dict({"state": state, "param_groups": groups})


class _TensorBag(torch.nn.Module):
    """Wraps loose tensors (optimizer state) so they travel through the module checkpoint writer."""

    def __init__(self, tensors: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.tensors = tensors

    def state_dict(self, *args: object, **kwargs: object) -> dict[str, torch.Tensor]:  # type: ignore[override]
        return self.tensors


def save_training_state(nets: Nets, cfg: TrainConfig, step: int, path: Path) -> None:
    og, groups_g = _optimizer_tensors(nets.opt_g, "g")
    od, groups_d = _optimizer_tensors(nets.opt_d, "d")
    modules = {"G": nets.G, "G_ema": nets.G_ema, "head": nets.head, "D": nets.D,
               "opt": _TensorBag({**og, **od})}
    meta = {"train": cfg.to_dict(), "step": step, "opt_groups": {"g": groups_g, "d": groups_d}}
    save_modules(path, modules, meta, kind="vera-train-state")


def load_training_state(nets: Nets, cfg: TrainConfig, path: Path) -> int:
    expect = {"train.G": cfg.G.to_dict(), "train.D": cfg.D.to_dict()}
    tensors, meta = read_checked(path, "vera-train-state", expect)
    load_into({"G": nets.G, "G_ema": nets.G_ema, "head": nets.head, "D": nets.D}, tensors)
    groups = meta["config"]["opt_groups"]
    _load_optimizer(nets.opt_g, tensors, "opt.g", groups["g"])
    _load_optimizer(nets.opt_d, tensors, "opt.d", groups["d"])
    return int(meta["config"]["step"])


def _checkpoint(nets: Nets, cfg: TrainConfig, step: int) -> None:
    out = Path(cfg.out_dir)
    save_training_state(nets, cfg, step, out / "last.safetensors")
    parser = Path(cfg.parser) if cfg.parser else None
    save_vera(out / "vera.safetensors", nets.G_ema, nets.head, Path(cfg.encoder), parser, cfg.data,
              {"step": step})
    log.info("checkpoint at step %d", step)


def _link_dependencies(cfg: TrainConfig, out: Path) -> None:
    """The bundle names its encoder/parser files; keep them (and their sidecars) beside it."""
    for dep in (cfg.encoder, cfg.parser):
        if not dep:
            continue
        for src in (Path(dep), Path(dep).with_suffix(".json")):
            dst = out / src.name
            if src.exists() and not dst.exists() and src.resolve() != dst.resolve():
                dst.symlink_to(src.resolve())


def train(cfg: TrainConfig) -> list[dict[str, float]]:
    """Run training as configured; returns the per-step loss history (rank 0)."""
    rank, world, device = _dist_setup(cfg)
    out = Path(cfg.out_dir)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_config.json").write_text(cfg.dumps())
        print(cfg.dumps(), flush=True)
    nets = build_nets(cfg, device)
    if cfg.dry_run:
        log.info("dry run: G %d params, D %d params", sum(p.numel() for p in nets.G.parameters()),
                 sum(p.numel() for p in nets.D.parameters()))
        return []
    start = load_training_state(nets, cfg, out / "last.safetensors") if cfg.resume and (
        out / "last.safetensors").exists() else 0
    if rank == 0:
        _link_dependencies(cfg, out)
    parser = load_parser(Path(cfg.parser)).to(device) if cfg.parser else None
    amp = cfg.amp and device.type == "cuda"
    scaler_g, scaler_d = torch.amp.GradScaler(enabled=amp), torch.amp.GradScaler(enabled=amp)
    gen = torch.Generator().manual_seed(cfg.seed * 7919 + rank + start)
    batches = _real_batches(cfg, rank, world, device)
    history: list[dict[str, float]] = []
    t0 = time.monotonic()
    for step in range(start, cfg.steps):
        real, labels = next(batches)
        labels = _fill_labels(labels, real, parser)
        stats = d_step(nets, cfg, real, labels, step, gen, scaler_d, amp, world)
        stats |= g_step(nets, cfg, real, gen, scaler_g, amp, world, parser)
        _ema_update(nets, cfg, world)
        history.append(stats)
        if rank == 0 and (step % cfg.log_every == 0 or step == cfg.steps - 1):
            log.info("step %d %s %.1fs", step, json.dumps({k: round(v, 4) for k, v in stats.items()}),
                     time.monotonic() - t0)
        if rank == 0 and ((step + 1) % cfg.ckpt_every == 0 or step == cfg.steps - 1):
            _checkpoint(nets, cfg, step + 1)
    if world > 1:
        dist.destroy_process_group()
    return history
