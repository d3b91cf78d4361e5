"""Broadcast-free arithmetic (anonymizer/channels.py, issue-11t3) gives the values of the broadcast
expressions it replaced, bit for bit: the helpers on every dtype, and the synthesis' colour steps on a real
patient crop against their former formulas, written out here."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from anonymizer.channels import channel_mean, channel_stats, per_channel, per_pixel, widen
from anonymizer.donors import skin_mask
from anonymizer.engines import surrogate_colour as colour
from anonymizer.engines.surrogate_shape import _wide_blur as shape_blur
from anonymizer.engines.surrogate_shape import broad_shading
from anonymizer.engines.surrogate_texture import _lab, _match_colour
from anonymizer.faces import align
from anonymizer.faces.detect import detect_faces
from anonymizer.faces.regions import interocular


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8, np.bool_, np.int64])
@pytest.mark.parametrize("shape", [(37, 41), (4, 37, 41)])
def test_per_channel_is_the_broadcast_weight_made_real(dtype: type, shape: tuple[int, ...]) -> None:
    plane = (np.random.default_rng(1).random(shape) * 3).astype(dtype)
    full = per_channel(plane)
    assert full.dtype == plane.dtype and full.flags.c_contiguous
    assert np.array_equal(full, np.broadcast_to(plane[..., None], (*shape, 3)))
    assert np.array_equal(per_channel(plane[..., ::2]), np.broadcast_to(plane[..., ::2, None], (*shape[:-1],
                                                                                                   21, 3)))
    assert np.array_equal(widen(plane[..., None]), full) and widen(full) is full


def test_per_pixel_products_equal_the_broadcast_vectors() -> None:
    rng = np.random.default_rng(2)
    image = rng.random((64, 48, 3), np.float32) * 255
    for vector in (rng.random(3).astype(np.float32), rng.random(3), np.array([0, 1, 1])):
        tiled = per_pixel(vector, image.shape)
        assert not tiled.flags.writeable and tiled.strides[0] == 0  # a view: one row, no copy per pixel
        for got, want in (((image - tiled) * tiled + tiled, (image - vector) * vector + vector),
                          (per_channel(image[..., 0]) * tiled, image[..., :1] * vector)):
            assert got.dtype == want.dtype and np.array_equal(got, want)


def test_channel_stats_are_numpys_mean_and_std() -> None:
    """numpy sums (n, 3) pixels over axis 0 sequentially; a numpy that changed that order fails here (then
    ``channel_stats`` must follow it)."""
    rng = np.random.default_rng(7)
    for n in (1, 2, 7, 1000, 65_537, 150_000):
        for scale in (1.0, 255.0):
            pixels = (rng.random((n, 3)) * scale + rng.normal(0, 40, 3)).astype(np.float32)
            mean, std = channel_stats(pixels)
            assert np.array_equal(mean, pixels.mean(0)) and np.array_equal(std, pixels.std(0)), n
            assert np.array_equal(channel_mean(pixels), mean)


@pytest.fixture(scope="module")
def crop(pair: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    lm = detect_faces(pair[0])[0].landmarks
    al = align.canonical_alignment(lm, 512)
    return align.crop(pair[0], al), align.apply(al.matrix, lm).astype(np.float32)


def _old_skin_light(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """``skin_light`` as it was before issue-11t3 (broadcast weights, the skin mean gathered always)."""
    lab = colour._lab(image)
    skin = skin_mask(landmarks, image.shape[0])
    mask = (skin & colour._skin_coloured(lab, landmarks, skin=skin.copy())).astype(np.float32)
    sigma = colour.LIGHT_SIGMA * interocular(landmarks)
    weight = colour._wide_blur(mask, sigma)
    masked = lab * mask[..., None]
    light = colour._wide_blur(masked, sigma)
    wide_w = colour._wide_blur(mask, 3 * sigma)
    wide = colour._wide_blur(masked, 3 * sigma) / np.maximum(wide_w, 1e-6)[..., None]
    wide = np.where((wide_w > 1e-4)[..., None], wide, lab[mask > 0].mean(0))
    share = np.clip(weight / colour.MIN_COVER, 0, 1)[..., None]
    return (share * light / np.maximum(weight, 1e-6)[..., None] + (1 - share) * wide).astype(np.float32)


def test_the_colour_steps_give_their_former_values_bit_for_bit(crop: tuple[np.ndarray, np.ndarray]) -> None:
    image, lm = crop
    synth = np.ascontiguousarray(image[:, ::-1])  # another face's pixels on the patient's landmarks
    got = colour.skin_light(image, lm)
    assert got is not None and np.array_equal(got, _old_skin_light(image, lm))
    # a face in one corner of the crop: the wide blur reaches nowhere near the far one (the skin mean there)
    small = lm * 0.25
    got = colour.skin_light(image, small)
    assert got is not None and np.array_equal(got, _old_skin_light(image, small))
    sigma = 3 * colour.LIGHT_SIGMA * interocular(small)
    assert (colour._wide_blur(skin_mask(small, 512).astype(np.float32), sigma) <= 1e-4).any()

    skin = skin_mask(lm, 512)
    stats = (_lab(image)[skin].mean(0), _lab(image)[skin].std(0) + 1e-3)
    src = _lab(synth)
    mu, sd = src[skin].mean(0), src[skin].std(0) + 1e-3
    old = cv2.cvtColor(np.clip((src - mu) * np.clip(stats[1] / sd, 0.5, 2.0) + stats[0], 0, 255)
                       .astype(np.uint8), cv2.COLOR_LAB2RGB)
    assert np.array_equal(_match_colour(synth, lm, stats, 2.0, skin), old)

    domain = skin_mask(lm, 512)
    sigma = 0.35 * interocular(lm)
    weight = shape_blur(domain.astype(np.float32), sigma)
    diff = (image.astype(np.float32) - synth.astype(np.float32)) * domain[..., None]
    low = shape_blur(diff, sigma) / np.maximum(weight, 1e-3)[..., None]
    old = np.clip(synth.astype(np.float32) + low * domain[..., None] + 0.5, 0, 255).astype(np.uint8)
    assert np.array_equal(broad_shading(synth, image, domain, sigma), old)

    kept = np.zeros((512, 512), bool)
    kept[300:380, 200:320] = True
    ring = colour.kept_ring(kept, lm)
    old = np.clip(ring * image.astype(np.float32) + (1.0 - ring) * synth.astype(np.float32) + 0.5, 0, 255)
    assert np.array_equal(colour.ease_into_kept(synth, image, kept, lm, ring), old.astype(np.uint8))
    hair = colour.boundary_hair(image, lm, kept)
    assert hair.any() and np.array_equal(colour.boundary_base(image, synth, lm, kept, hair=hair),
                                         np.where(hair[..., None], synth, image))

    texture = image.astype(np.float32) * 1.3 - 20
    average = synth.astype(np.float32)
    deviation = texture - average
    light = deviation @ np.array([0.299, 0.587, 0.114], np.float32)
    scale = 12.0 * np.tanh(np.abs(light) / 12.0) / np.maximum(np.abs(light), 1e-3)
    assert np.array_equal(colour.soften(texture, average, 12.0), average + deviation * scale[..., None])


def test_the_donor_mix_and_the_feature_colours_give_their_former_values(
    crop: tuple[np.ndarray, np.ndarray],
) -> None:
    image, lm = crop
    rng = np.random.default_rng(3)
    textures = np.stack([image, image[:, ::-1], image[::-1]]).astype(np.float32)
    covers = rng.random((3, 512, 512)).astype(np.float32)
    weights = np.array([0.5, 0.3, 0.2])
    plain = np.tensordot(weights, textures, axes=1)
    mass = np.tensordot(weights, covers, axes=1)
    covered = np.tensordot(weights, textures * covers[..., None], axes=1) / np.maximum(mass, 1e-6)[..., None]
    share = np.clip(mass / 0.25, 0.0, 1.0)[..., None]
    old = (share * covered + (1.0 - share) * plain).astype(np.float32)
    assert np.array_equal(colour.covered_average(textures, weights, covers), old)

    synth = np.ascontiguousarray(image[:, ::-1])
    patient = colour.feature_colours(image, lm)
    lab = colour._lab(synth)
    shift = np.zeros_like(lab)
    channels = [np.ones(3), *[np.array(c) for _ in colour.EYE_POINTS for c in ((0, 1, 1), (1, 1, 1))]]
    for mask, want, use in zip(colour._feature_masks(lab, lm), patient, channels, strict=True):
        if want is None or mask.sum() < 8:
            continue
        delta = use * np.clip(want - lab[mask].mean(0), -colour.FEATURE_SHIFT, colour.FEATURE_SHIFT)
        y0, y1, x0, x1 = colour._blur_window(mask, 0.03 * interocular(lm))
        weight = cv2.GaussianBlur(mask[y0:y1, x0:x1].astype(np.float32), (0, 0), 0.03 * interocular(lm))
        shift[y0:y1, x0:x1] += weight[..., None] * delta
    assert np.array_equal(colour.match_features(synth, lm, patient), colour._rgb(lab + shift))


def test_the_patients_skin_statistics_give_their_former_values(crop: tuple[np.ndarray, np.ndarray]) -> None:
    """_skin_stats by channel_stats and one gather (issue-11t9) against its former formula."""
    from anonymizer.engines.surrogate_texture import _skin_stats

    image, landmarks = crop
    lab, mask = _lab(image), skin_mask(landmarks, image.shape[0])
    mean, std = _skin_stats(image, landmarks)
    assert np.array_equal(mean, lab[mask].mean(0)) and np.array_equal(std, lab[mask].std(0) + 1e-3)
    assert mean.dtype == lab[mask].mean(0).dtype
