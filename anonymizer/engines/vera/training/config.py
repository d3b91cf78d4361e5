"""Training configuration: one frozen, fully resolved object that is printed, saved and then run."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from anonymizer.engines.vera.generator import GeneratorConfig
from anonymizer.engines.vera.training.discriminator import DiscriminatorConfig

# Presets for the generator + discriminator; "tiny" is what tests and the CPU bench use.
PRESETS: dict[str, dict[str, dict[str, int]]] = {
    "tiny": {
        "G": {"resolution": 32, "code_dim": 16, "hl_dim": 16, "local_ch": 16, "feat_ch": 16, "coarse_res": 16,
              "render_ch": 32, "min_ch": 16, "num_freqs": 3, "local_layers": 2},
        "D": {"resolution": 32, "channels": 32, "max_ch": 64},
    },
    "small": {
        "G": {"resolution": 64, "code_dim": 32, "hl_dim": 32, "local_ch": 32, "feat_ch": 32, "coarse_res": 16,
              "render_ch": 64, "min_ch": 32, "num_freqs": 4},
        "D": {"resolution": 64, "channels": 32, "max_ch": 128},
    },
    "256": {
        "G": {"resolution": 256, "code_dim": 256, "hl_dim": 256, "local_ch": 128, "feat_ch": 256,
              "coarse_res": 32, "render_ch": 256, "min_ch": 64, "num_freqs": 6, "local_layers": 4,
              "mapping_layers": 4},
        "D": {"resolution": 256, "channels": 64, "max_ch": 512},
    },
    "512": {
        "G": {"resolution": 512, "code_dim": 512, "hl_dim": 512, "local_ch": 256, "feat_ch": 512,
              "coarse_res": 64, "render_ch": 512, "min_ch": 64, "num_freqs": 6, "local_layers": 5,
              "mapping_layers": 8},
        "D": {"resolution": 512, "channels": 32, "max_ch": 512},
    },
}


@dataclass(frozen=True)
class TrainConfig:
    out_dir:         str                            # run folder: config, logs, checkpoints
    data:            str                            # "london:<faces root>" or an aligned-face folder
    encoder:         str                            # frozen high-level encoder file
    parser:          str = ""                       # parser checkpoint (masks for folders without masks)
    G:               GeneratorConfig = field(default_factory=GeneratorConfig)
    D:               DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    batch:           int = 8                        # per process
    steps:           int = 1000                     # optimisation steps
    lr_g:            float = 2e-3
    lr_d:            float = 2e-3
    r1_gamma:        float = 1.0                    # R1 weight (×r1_every, lazy regularisation)
    r1_every:        int = 4
    w_mirror:        float = 1.0                    # InfoNCE image vs its mirror through the head
    w_recode:        float = 1.0                    # InfoNCE re-encoded fake vs its high-level code
    w_mask_entropy:  float = 0.05                   # entropy of the coarse masks: crisper, more local regions
    w_locality:      float = 1.0                    # RGB change outside a class's mask when its codes swap
    w_seg_consist:   float = 0.0                    # CE: generator segmentation vs parser(fake), needs parser
    real_high_frac:  float = 0.5                    # share of fakes conditioned on real images' codes
    ema_kimg:        float = 0.5                    # EMA half-life in thousands of images
    amp:             bool = True                    # float16 autocast + GradScaler on CUDA (ignored on CPU)
    device:          str = "auto"                   # auto | cuda | cpu
    seed:            int = 0
    workers:         int = 4                        # data-loader worker processes (folders only)
    log_every:       int = 20
    ckpt_every:      int = 500
    holdout:         int = 8                        # London set: identities held out of training
    resume:          bool = True                    # continue from out_dir/last.* when present
    dry_run:         bool = False                   # resolve, print and save the config, build nets, stop

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def dumps(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def resolve(preset: str, overrides: dict[str, Any], g_overrides: dict[str, int] | None = None) -> TrainConfig:
    """Preset + explicit overrides → a frozen config; the resolution is kept consistent between G and D."""
    p = PRESETS[preset]
    g = GeneratorConfig(**{**p["G"], **(g_overrides or {})})
    d = DiscriminatorConfig(**{**p["D"], "resolution": g.resolution})
    known = {f.name for f in fields(TrainConfig)}
    unknown = set(overrides) - known
    if unknown:
        raise ValueError(f"unknown training options: {sorted(unknown)}")
    return TrainConfig(**{"G": g, "D": d, **overrides})


def load_config(path: Path) -> TrainConfig:
    raw = json.loads(Path(path).read_text())
    raw["G"] = GeneratorConfig(**raw["G"])
    raw["D"] = DiscriminatorConfig(**raw["D"])
    return TrainConfig(**raw)


def with_(cfg: TrainConfig, **kw: Any) -> TrainConfig:
    return replace(cfg, **kw)
