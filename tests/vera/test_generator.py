"""Generator shapes, gradient flow to every latent, and region locality of the per-class codes."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from anonymizer.engines.vera.classes import CLASS_INDEX, NUM_CLASSES
from anonymizer.engines.vera.generator import Generator, Latents
from anonymizer.engines.vera.training.discriminator import Discriminator, DiscriminatorConfig
from tests.vera.conftest import TINY_G


def test_generator_outputs_rgb_segmentation_and_coarse_masks_of_configured_size() -> None:
    G = Generator(TINY_G)
    out = G(G.sample_latents(3))
    r, c = TINY_G.resolution, TINY_G.coarse_res
    assert out.rgb.shape == (3, 3, r, r)
    assert out.seg.shape == (3, NUM_CLASSES, r, r)
    assert out.coarse.shape == (3, NUM_CLASSES, c, c)
    torch.testing.assert_close(out.coarse.sum(1), torch.ones(3, c, c))
    d = Discriminator(DiscriminatorConfig(resolution=r, channels=16, max_ch=32))
    assert d(out.rgb, out.seg.softmax(1)).shape == (3,)


def test_resolution_is_configurable_from_32_to_128() -> None:
    for res in (32, 64, 128):
        G = Generator(TINY_G.with_(resolution=res))
        assert G(G.sample_latents(1)).rgb.shape[-1] == res


def test_gradients_reach_every_latent_of_every_class() -> None:
    G = Generator(TINY_G)
    lat = G.sample_latents(2)
    lat = Latents(*(t.detach().requires_grad_(True) for t in (lat.shape, lat.texture, lat.high)))
    out = G(lat)
    (out.rgb.square().mean() + out.seg.softmax(1).square().mean()).backward()
    for t in (lat.shape, lat.texture):
        per_class = t.grad.abs().sum(dim=(0, 2))  # [K]
        assert (per_class > 0).all(), per_class
    assert lat.high.grad.abs().sum() > 0


def test_seeded_sampling_is_deterministic_and_seed_dependent() -> None:
    G = Generator(TINY_G)
    a = G.sample_latents(1, torch.Generator().manual_seed(5))
    b = G.sample_latents(1, torch.Generator().manual_seed(5))
    c = G.sample_latents(1, torch.Generator().manual_seed(6))
    assert torch.equal(a.shape, b.shape) and torch.equal(a.high, b.high)
    assert not torch.equal(a.shape, c.shape)


def _change_energy_in_mask(G: Generator, cls: str, seed: int) -> tuple[float, float]:
    """Share of the |Δrgb| energy inside the class's generated mask (dilated by the render net's reach)."""
    k = CLASS_INDEX[cls]
    gen = torch.Generator().manual_seed(seed)
    lat = G.sample_latents(4, gen)
    new = G.sample_latents(4, gen)
    shape, tex = lat.shape.clone(), lat.texture.clone()
    shape[:, k], tex[:, k] = new.shape[:, k], new.texture[:, k]
    noise = [torch.zeros(4, 1, h, w) for h, w in G.noise_shapes()]
    with torch.no_grad():
        a, b = G(lat, noise), G(Latents(shape, tex, lat.high), noise)
    r = TINY_G.resolution
    prob = torch.maximum(a.coarse[:, k], b.coarse[:, k])[:, None]
    prob = F.interpolate(prob, size=(r, r), mode="bilinear", align_corners=False)
    mask = F.max_pool2d((prob > 0.1).float(), 7, 1, 3)[:, 0]  # render-net reach: about 3 px at 32 px
    delta = (a.rgb - b.rgb).abs().sum(1)
    return float((delta * mask).sum() / delta.sum()), float(mask.mean())


def test_mouth_codes_change_pixels_mostly_inside_the_mouth_mask() -> None:
    torch.manual_seed(3)
    G = Generator(TINY_G).eval()
    inside, area = _change_energy_in_mask(G, "mouth", seed=11)
    assert inside > 0.8, (inside, area)
    assert inside > 1.5 * area, (inside, area)  # concentrated, not just a mask covering everything


def test_locality_loss_penalises_change_outside_the_swapped_class_and_trains_the_generator() -> None:
    from anonymizer.engines.vera.training.train import locality_loss

    G = Generator(TINY_G)
    gen = torch.Generator().manual_seed(0)
    lat = G.sample_latents(4, gen)
    noise = [torch.zeros(4, 1, h, w) for h, w in G.noise_shapes()]
    loss = locality_loss(G, lat, G(lat, noise), noise, gen)
    assert loss.ndim == 0 and loss.item() > 0
    loss.backward()
    assert G.to_depth.weight.grad is not None and G.to_depth.weight.grad.abs().sum() > 0
