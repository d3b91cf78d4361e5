"""Single and joint inversion: error goes down, shared identity codes stay identical across a pair."""

from __future__ import annotations

import torch

from anonymizer.engines.vera.classes import CLASS_INDEX, IDENTITY_CLASSES, PER_PHOTO_CLASSES
from anonymizer.engines.vera.inversion import InversionConfig, invert, replace_identity
from anonymizer.engines.vera.model import VeraModel


def _targets(model: VeraModel, n: int = 2) -> torch.Tensor:
    G = model.G
    lat = G.sample_latents(n, torch.Generator().manual_seed(42))
    with torch.no_grad():
        return G(lat, [torch.zeros(n, 1, h, w) for h, w in G.noise_shapes()]).rgb.clamp(-1, 1)


def test_inversion_lowers_reconstruction_error(tiny_model: VeraModel) -> None:
    target = _targets(tiny_model, 1)
    res = invert(tiny_model, target, None, None, InversionConfig(steps=40, lr=0.1), shared=False)
    assert res.mse_after < 0.7 * res.mse_before, (res.mse_before, res.mse_after)
    assert res.history[-1] < res.history[0]


def test_joint_inversion_shares_identity_codes_and_keeps_per_photo_codes(tiny_model: VeraModel) -> None:
    target = _targets(tiny_model, 2)
    labels = torch.randint(0, 10, (2, 32, 32))
    res = invert(tiny_model, target, labels, None, InversionConfig(steps=8, optimize_noise=True), shared=True)
    lat = res.latents
    for name in IDENTITY_CLASSES:
        k = CLASS_INDEX[name]
        assert torch.equal(lat.shape[0, k], lat.shape[1, k]) and torch.equal(
            lat.texture[0, k], lat.texture[1, k]
        )
    assert torch.equal(lat.high[0], lat.high[1])
    per_photo = [CLASS_INDEX[c] for c in PER_PHOTO_CLASSES]
    assert not torch.equal(lat.shape[0, per_photo], lat.shape[1, per_photo])


def test_identity_replacement_is_keyed_and_keeps_preserved_codes(tiny_model: VeraModel) -> None:
    target = _targets(tiny_model, 2)
    lat = invert(tiny_model, target, None, None, InversionConfig(steps=3), shared=True).latents
    nose = CLASS_INDEX["nose"]
    a = replace_identity(tiny_model, lat, 1234, keep=(nose,))
    b = replace_identity(tiny_model, lat, 1234, keep=(nose,))
    c = replace_identity(tiny_model, lat, 9999, keep=(nose,))
    assert torch.equal(a.high, b.high) and torch.equal(a.shape, b.shape)
    assert not torch.equal(a.high, c.high)
    assert torch.equal(a.shape[:, nose], lat.shape[:, nose])  # preserved region's codes kept
    skin, mouth = CLASS_INDEX["skin"], CLASS_INDEX["mouth"]
    assert not torch.equal(a.shape[:, skin], lat.shape[:, skin])  # identity class replaced
    assert torch.equal(a.shape[:, mouth], lat.shape[:, mouth])  # per-photo class kept
    assert torch.equal(a.shape[0, skin], a.shape[1, skin])  # one synthetic identity for the pair
