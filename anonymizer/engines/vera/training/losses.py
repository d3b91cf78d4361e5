"""Training losses shared by the VerA loop and the encoder pre-training: InfoNCE and the R1 penalty."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Symmetric InfoNCE: row i of ``a`` and row i of ``b`` are positives, other rows negatives."""
    assert a.shape == b.shape and a.ndim == 2, (a.shape, b.shape)
    logits = F.normalize(a.float(), dim=1) @ F.normalize(b.float(), dim=1).T / temperature  # [B, B]
    target = torch.arange(a.shape[0], device=a.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def r1_penalty(real_logits: torch.Tensor, real_inputs: list[torch.Tensor]) -> torch.Tensor:
    """R1: squared gradient norm of D at real samples."""
    grads = torch.autograd.grad(real_logits.sum(), real_inputs, create_graph=True)
    return torch.stack([g.float().pow(2).flatten(1).sum(1) for g in grads]).sum(0).mean()
