"""Inversion of one photo or a jointly inverted group, and keyed identity replacement.

Loss = pixel MSE (heavier inside the preserved region) + perceptual (parser-encoder features, or the frozen
identity encoder when no parser) + segmentation cross-entropy (generator mask vs parser mask) + latent
regularisers (codes towards the running mean, high-level code towards its encoder initialisation, noise).
Joint inversion shares the high-level code and the identity classes' shape/texture codes across photos;
background/mouth/neck/cloth codes (pose, expression, treatment) stay per photo.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from anonymizer.engines.vera.classes import CLASS_INDEX, IDENTITY_CLASSES
from anonymizer.engines.vera.generator import Latents
from anonymizer.engines.vera.model import VeraModel

IDENTITY_IDX = tuple(CLASS_INDEX[c] for c in IDENTITY_CLASSES)


@dataclass(frozen=True)
class InversionConfig:
    steps:          int = 200      # Adam steps
    lr:             float = 0.05   # peak learning rate (linear warm-up 5 %, cosine decay last 25 %)
    w_pixel:        float = 1.0
    w_percep:       float = 0.5
    w_seg:          float = 0.2
    w_code_reg:     float = 0.01   # ‖w − w̄‖²
    w_high_reg:     float = 0.1    # ‖h − h_encoder‖²
    w_noise_reg:    float = 1.0
    preserve_gain:  float = 2.0    # pixel-loss weight inside the preserved mask
    optimize_noise: bool = False
    init:           str = "encoder"  # "encoder": h from the frozen encoder + head; "mean": one fixed h
    search:         int = 0        # extra: best of N random code sets as the start point (0 = off)
    amp:            bool = False   # float16 autocast for the generator/losses (CUDA only)
    seed:           int = 0


@dataclass
class InversionResult:
    latents:    Latents                  # [N, …] per-photo latents (shared codes expanded)
    noise:      list[torch.Tensor]       # noise maps used for rendering
    history:    list[float]              # total loss per step
    mse_before: float                    # reconstruction MSE at the start point ([-1, 1] scale)
    mse_after:  float                    # after optimisation


class _Params(torch.nn.Module):
    """The free variables: shared identity codes (1 row) and per-photo codes (N rows)."""

    def __init__(self, init: Latents, shared: bool) -> None:
        super().__init__()
        n = init.high.shape[0]
        self.shared, self.n = shared, n
        id_mask = torch.zeros(init.shape.shape[1], dtype=torch.bool)
        id_mask[list(IDENTITY_IDX)] = True
        self.register_buffer("id_mask", id_mask if shared else torch.zeros_like(id_mask))
        rows = (lambda t: t[:1].clone()) if shared else (lambda t: t.clone())
        self.shape_id, self.tex_id, self.high = (torch.nn.Parameter(rows(t)) for t in
                                                 (init.shape, init.texture, init.high))
        self.shape_pp = torch.nn.Parameter(init.shape.clone())
        self.tex_pp = torch.nn.Parameter(init.texture.clone())

    def latents(self) -> Latents:
        m = self.id_mask[None, :, None]  # [1, K, 1]
        shape = torch.where(m, self.shape_id.expand(self.n, -1, -1), self.shape_pp)
        tex = torch.where(m, self.tex_id.expand(self.n, -1, -1), self.tex_pp)
        return Latents(shape, tex, F.normalize(self.high, dim=1).expand(self.n, -1))


def _lr_at(step: int, total: int, peak: float) -> float:
    t = step / max(total, 1)
    ramp = min(1.0, t / 0.05)
    down = min(1.0, (1.0 - t) / 0.25)
    return peak * ramp * (0.5 - 0.5 * math.cos(math.pi * down))


def _percep(model: VeraModel, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    if model.parser is None:
        return (1 - F.cosine_similarity(model.encoder(a), model.encoder(b), dim=1)).mean()
    fa, fb = model.parser.features(a), model.parser.features(b)
    terms = [(F.normalize(x, dim=1) - F.normalize(y, dim=1)).pow(2).mean()
             for x, y in zip(fa, fb, strict=True)]
    return torch.stack(terms).sum()


def _start(model: VeraModel, target: torch.Tensor, cfg: InversionConfig) -> Latents:
    n = target.shape[0]
    G = model.G
    gen = torch.Generator().manual_seed(cfg.seed)
    w = G.w_avg[None].expand(n, -1, -1, -1)  # [N, K, 2, D]
    if cfg.init == "encoder":
        with torch.no_grad():
            high = F.normalize(model.high_code(target).mean(0, keepdim=True), dim=1).expand(n, -1)
    else:
        high = F.normalize(torch.randn(1, G.cfg.hl_dim, generator=gen), dim=1).to(target.device).expand(n, -1)
    best = Latents(w[:, :, 0].clone(), w[:, :, 1].clone(), high.clone())
    if cfg.search:
        with torch.no_grad():
            best_err = F.mse_loss(G(best, _const_noise(G, n, target.device, cfg.seed)).rgb, target).item()
            for _ in range(cfg.search):
                cand = G.sample_latents(n, gen, high=high, truncation=0.7)
                err = F.mse_loss(G(cand, _const_noise(G, n, target.device, cfg.seed)).rgb, target).item()
                best, best_err = (cand, err) if err < best_err else (best, best_err)
    return best


def _const_noise(G: torch.nn.Module, n: int, device: torch.device, seed: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed + 1)
    return [torch.randn(n, 1, h, w, generator=gen).to(device) for h, w in G.noise_shapes()]


def invert(
    model:     VeraModel,
    target:    torch.Tensor,            # [N, 3, R, R] photos of one patient in [-1, 1]
    labels:    torch.Tensor | None,     # [N, R, R] parser labels (None: computed with model.parser)
    preserve:  torch.Tensor | None,     # [N, 1, R, R] preserved-region weights in [0, 1] or None
    cfg:       InversionConfig,
    shared:    bool = True,             # joint inversion with shared identity codes
) -> InversionResult:
    n, _, r, _ = target.shape
    assert r == model.G.cfg.resolution and target.shape[1] == 3, target.shape
    if labels is None and model.parser is not None:
        with torch.no_grad():
            labels = model.parser(target).argmax(1)
    init = _start(model, target, cfg)
    params = _Params(init, shared).to(target.device)
    noise = [t.requires_grad_(cfg.optimize_noise) for t in _const_noise(model.G, n, target.device, cfg.seed)]
    opt = torch.optim.Adam(list(params.parameters()) + (noise if cfg.optimize_noise else []), lr=cfg.lr)
    weight = torch.ones_like(target[:, :1])
    if preserve is not None:
        weight = weight + (cfg.preserve_gain - 1.0) * preserve
    with torch.no_grad():
        mse_before = F.mse_loss(model.G(params.latents(), noise).rgb, target).item()
    history: list[float] = []
    for step in range(cfg.steps):
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, cfg.steps, cfg.lr)
        lat = params.latents()
        with torch.autocast("cuda", dtype=torch.float16, enabled=cfg.amp and target.is_cuda):
            out = model.G(lat, noise)
            loss = cfg.w_pixel * ((out.rgb.float() - target).pow(2) * weight).mean()
            loss = loss + cfg.w_percep * _percep(model, out.rgb, target)
            if labels is not None:
                loss = loss + cfg.w_seg * F.cross_entropy(out.seg.float(), labels)
        w_avg = model.G.w_avg
        code_reg = (lat.shape - w_avg[:, 0]).pow(2).mean() + (lat.texture - w_avg[:, 1]).pow(2).mean()
        loss = loss + cfg.w_code_reg * code_reg
        loss = loss + cfg.w_high_reg * (lat.high - init.high).pow(2).sum(1).mean()
        if cfg.optimize_noise:
            loss = loss + cfg.w_noise_reg * sum((z.mean() ** 2 + (z.var() - 1) ** 2) for z in noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        history.append(loss.item())
    final = params.latents().detach()
    noise = [z.detach() for z in noise]
    with torch.no_grad():
        mse_after = F.mse_loss(model.G(final, noise).rgb, target).item()
    return InversionResult(final, noise, history, mse_before, mse_after)


def replace_identity(
    model: VeraModel, lat: Latents, identity_seed: int, keep: tuple[int, ...], truncation: float = 0.7
) -> Latents:
    """Swap the identity classes' codes and the high-level code for keyed ones (same for every photo);
    classes in ``keep`` (the preserved region) and per-photo classes keep their inverted codes."""
    n = lat.high.shape[0]
    gen = torch.Generator().manual_seed(int(identity_seed) % (2**63 - 1))
    new = model.G.sample_latents(1, gen, truncation=truncation)
    swap = torch.zeros(lat.shape.shape[1], dtype=torch.bool, device=lat.high.device)
    swap[[k for k in IDENTITY_IDX if k not in keep]] = True
    m = swap[None, :, None]
    shape = torch.where(m, new.shape.expand(n, -1, -1), lat.shape)
    tex = torch.where(m, new.texture.expand(n, -1, -1), lat.texture)
    return Latents(shape, tex, new.high.expand(n, -1).clone())
