"""Synthesis of one surrogate face (surrogate.py's engine mixes this in): per face, what no rung changes
(the peers' centre, the patient's anti-face, skin light and feature colours; the donors' averaged texture,
keyed identity mix and shape), then per rung the caricatured texture with one donor's detail, warped onto the
target shape, matched in colour and light, and Poisson-blended into the patient's crop."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from anonymizer import poisson
from anonymizer.channels import widen
from anonymizer.donors import DonorBank, DonorPhoto, expression, skin_mask
from anonymizer.engines.base import AlignedFace
from anonymizer.engines.surrogate_bound import ShapeSpace
from anonymizer.engines.surrogate_brows import brow_contrast, match_brows
from anonymizer.engines.surrogate_colour import (
    _skin_coloured,
    boundary_base,
    boundary_hair,
    covered_average,
    detail_donor,
    ease_into_kept,
    feature_colours,
    fringe,
    hanging_matte,
    highlight_level,
    kept_ring,
    lay_over,
    lid_colours,
    match_features,
    match_lids,
    relight,
    skin_cover,
    skin_light,
    soften,
    tame_highlights,
)
from anonymizer.engines.surrogate_donors import DonorChoice
from anonymizer.engines.surrogate_identity import mix_lightness, mix_shape, neutral_lightness
from anonymizer.engines.surrogate_mouth import (
    cap_opening,
    cap_width,
    interior_weight,
    keep_corners,
    open_donor,
    with_interior,
)
from anonymizer.engines.surrogate_settings import Strength, SurrogateSettings
from anonymizer.engines.surrogate_shape import (
    ExpressionModel,
    broad_shading,
    inset_domain,
    keep_frame,
    keep_outline_frame,
)
from anonymizer.engines.surrogate_shaven import is_shaven, shave_weight, shaved, shaved_detail
from anonymizer.engines.surrogate_spread import FaceSpace, KeyedSteps, spread_key
from anonymizer.engines.surrogate_target import (
    FIT_ALL,
    FIT_INNER,
    REGION_POINTS,
    _caricature,
    _target_shape,
    _without_folds,
    folded,
    keep_brow_height,
    keep_eye_opening,
    outline_floor,
    unfold_locally,
)
from anonymizer.engines.surrogate_texture import (
    ANTI_CLIP,
    _anti_face,
    _caricature_texture,
    _closest,
    _coarse_deviation,
    _despeckled,
    _lab,
    _lightness,
    _match_colour,
    _sharpen,
    _skin_stats,
    _with_detail,
    held,
    outward,
)
from anonymizer.faces.regions import interocular
from anonymizer.faces.skin import SkinSource, skin_source
from anonymizer.faces.warp import extended, piecewise_affine
from anonymizer.plans import Region

POISSON_INSET = 0.10  # Poisson domain inset from the face outline, × inter-ocular distance
RUNG_BASES = 16  # rungs' textures and targets a group keeps (Synthesis._rung_base; ~0.8 MB each)
SHADING_SIGMA = 0.35  # the patient's broadest shading band (× inter-ocular distance), surrogate_shape.py
JAW_INSET = 0.02  # the same below the nose bridge: the synthetic face reaches the jaw (surrogate_shape)


@dataclass(frozen=True)
class Ingredients:
    """What one face's synthesis needs that no rung changes: computed once per group, mixed per rung."""

    average: np.ndarray  # (S, S, 3) float32 mean of the donors' textures closest in expression, common tone
    coarse: np.ndarray  # (S, S, 3) float32 the average's deviation from the peers' mean above the pore scale
    peers: _PeerBase
    shape: np.ndarray  # (68, 2) mean landmarks of those photos
    detail: np.ndarray  # (S, S, 3) float32 one donor's fine band (texture − its blur), shape-free
    # per rung (Strength) made from these: whether settings.eye_opening would open an eye of its target (with
    # eye_finish: the finish is made only where it would change something)
    narrowed: dict = field(default_factory=dict, init=False, compare=False, repr=False)


@dataclass(frozen=True)
class _FaceRung:
    """One face's rung as ``_synthesize`` asks for it: what ``_rung_base`` makes its texture and target from
    and keys them by (the face, ingredients and repelled donors by id)."""

    face: AlignedFace
    ingredients: Ingredients
    strength: Strength
    repel: tuple[list[DonorPhoto], ...]  # donors an earlier rung's output matched, each the bank's own list
    finish: bool  # with the colour finish (surrogate_ladder ``_finished``)
    skip: frozenset[str]  # a preview's parts left out (settings.preview_rungs)


@dataclass(frozen=True)
class _PeerBase:
    """What one face's synthesis needs from its peers and its own skin: the same for every donor set."""

    centre: np.ndarray  # (S, S, 3) float32 mean texture of the patient's demographic peers
    anti: np.ndarray  # (S, S, 3) float32 anti-face of the patient, at gain 1
    shape_centre: np.ndarray  # (68, 2) mean landmarks of the peers
    skin: tuple[np.ndarray, np.ndarray] | None  # the patient's skin Lab mean and std (None: no skin visible)
    light: np.ndarray | None = None  # (S, S, 3) the patient's skin Lab at the scale of the light
    features: list[np.ndarray | None] | None = None  # the patient's mean Lab of lips, irises, eye whites
    highlight: float = float("inf")  # how far the patient's brightest skin rises above the light
    coloured: np.ndarray | None = None  # the patient's skin-coloured pixels (the same on every rung)
    lids: list[np.ndarray | None] | None = None  # the patient's mean Lab around each eye
    brows: float | None = None  # how much darker than the skin around them the patient's brows are
    # a woman (header sex, else the engine's reading) of skin light enough for settings.anti_beard
    beardless: bool = False
    # settings.shave is on, the patient is a man (as ``beardless`` reads it) and his chin is no grainier
    # than settings.shave_grain × his cheeks (surrogate_shaven)
    shaven: bool = False
    # the Poisson blend's masks that only the patient's crop decides (_BlendSide), per kept regions: made on
    # the first rung, lives and dies with this face's base (one face of one group, never another patient's)
    blend_sides: dict[tuple, _BlendSide] = field(default_factory=dict, init=False, compare=False, repr=False)


@dataclass(frozen=True)
class _BlendSide:
    """What ``_poisson`` needs from the patient's crop alone: the same on every rung of a face."""

    domain: np.ndarray  # (S, S) bool: the patient's face region
    kept: np.ndarray  # (S, S) bool: the kept regions
    closed: np.ndarray  # (S, S) bool: no Poisson domain here (kept regions and a fringe)
    ring: np.ndarray | None  # (S, S, 1) float32: ease_into_kept's weight (None: nothing kept)
    hair: np.ndarray  # (S, S) bool: boundary_base's hair
    matte: np.ndarray | None = None  # (S, S) float32: hanging_matte (None: settings.hanging_fringe off)


class Synthesis:
    """The synthesis half of SurrogateEngine, which sets these attributes and the bank."""

    settings: SurrogateSettings
    _anti: np.ndarray | None
    _expression: ExpressionModel | None
    _shape_space: ShapeSpace | None
    _bounding: bool
    _toned: dict[int, np.ndarray]
    _skin: np.ndarray
    _tone: tuple[np.ndarray, np.ndarray]
    _covers: dict[int, np.ndarray]
    _despeckled: dict[int, np.ndarray]
    _neutral: dict[int, np.ndarray]
    _space: FaceSpace | None
    _beard: np.ndarray | None = None
    _shave: np.ndarray | None = None  # surrogate_shaven.shave_weight of the bank's reference (made once)
    _interior: np.ndarray | None = None  # interior_weight of the bank's reference (made once)
    # the group's rungs' textures and targets (_rung_base), by their inputs; None outside a group's anonymize
    _rung_bases: dict[tuple, tuple] | None = None

    @property
    def bank(self) -> DonorBank:
        raise NotImplementedError  # SurrogateEngine.bank

    def _peer_base(
        self,
        face: AlignedFace,
        peers: list[list[DonorPhoto]],
        patient_texture: np.ndarray,
        profile: tuple[str, float] = ("", float("nan")),
    ) -> _PeerBase:
        """``profile``: the patient's sex and skin ITA (degrees)."""
        population = [_closest(photos, expression(face.landmarks)) for photos in peers]
        centre = np.mean([self._common_tone(p) for p in population], axis=0)
        blur = 0.25 * interocular(self.bank.reference)
        # the crop's Lab, skin and skin-coloured masks, made once for the statistics below (each made its own)
        lab, skin = _lab(face.image), skin_mask(face.landmarks, face.image.shape[0])
        coloured = _skin_coloured(lab, face.landmarks, skin=skin.copy())
        light = skin_light(face.image, face.landmarks, lab, skin, coloured)
        return _PeerBase(
            centre=centre,
            anti=self._sexless(self._patient_anti(centre, patient_texture, blur)),
            shape_centre=np.mean([p.landmarks for p in population], axis=0),
            skin=_skin_stats(face.image, face.landmarks, lab, skin),
            light=light,
            features=feature_colours(face.image, face.landmarks, lab),
            highlight=highlight_level(face.image, face.landmarks, light, lab, skin & coloured),
            coloured=coloured,
            lids=lid_colours(face.image, face.landmarks) if self.settings.lid_colour else None,
            brows=brow_contrast(face.image, face.landmarks) if self.settings.brow_contrast else None,
            beardless=beardless(profile, self.settings),
            shaven=self.settings.shave > 0
            and profile[0] == "M"
            and is_shaven(patient_texture, self.bank.reference, self.settings.shave_grain),
        )

    def _patient_anti(self, centre: np.ndarray, patient_texture: np.ndarray, blur: float) -> np.ndarray:
        """The patient's anti-face term (once per group); its wide band blurred at reduced size with
        settings.patient_reduced_blur (~20 of its ~30 ms are the full-size kernels)."""
        reduced = self.settings.patient_reduced_blur
        return _anti_face(centre, patient_texture, self._anti_weight(), blur, reduced=reduced)

    def _ingredients(
        self,
        face: AlignedFace,
        donors: list[list[DonorPhoto]],
        base: _PeerBase,
        weights: np.ndarray,
        detail_at: int = 0,
        coefficients: np.ndarray | None = None,
        spread: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> Ingredients:
        want = expression(face.landmarks)
        picks = [_closest(photos, want) for photos in donors]
        iod = interocular(self.bank.reference)
        own = self._common_tone(picks[detail_at])  # the detail donor, the same for the group
        average = covered_average(
            np.stack([self._common_tone(p) for p in picks]),
            weights,
            np.stack([self._cover(p) for p in picks]),
        )
        shape = np.tensordot(weights, np.stack([p.landmarks for p in picks]), axes=1)
        # a keyed point of the donors' linear space, not their mean (surrogate_identity.py), from each
        # donor's most neutral photo: the same identity change in every photo of the patient
        neutral = [_closest(photos, np.zeros(2, np.float32)) for photos in donors]
        if coefficients is not None and self.settings.typicality > 0:
            average = mix_lightness(
                average,
                np.stack([self._neutral_light(p) for p in neutral]),
                coefficients,
                self.settings.typicality,
                self.settings.identity_clip,
            )
        if coefficients is not None and self.settings.shape_typicality > 0:
            shape = mix_shape(
                shape, np.stack([p.landmarks for p in neutral]), coefficients, self.settings.shape_typicality
            )
        # out from the peers' centre (settings.outward_*): a mix of k donors sits ~1/√k as far out as one face
        average = outward(average, base.centre, self.settings.outward_texture, 0.04 * iod)
        if self.settings.outward_shape != 1.0:
            shape = _caricature(shape, base.shape_centre, self.settings.outward_shape)
        if spread is not None:  # the patient's keyed point of the bank's face space (surrogate_spread.py)
            shape = shape + spread[0]
            average = average + spread[1][..., None]
        if 0 < self.settings.mouth_interior <= want[0]:  # an open mouth: teeth from one donor
            average = self._open_mouth(average, donors)
        return Ingredients(
            average=average,
            coarse=_coarse_deviation(average, base.centre, 0.04 * iod),
            peers=base,
            shape=shape,
            detail=own - cv2.GaussianBlur(own, (0, 0), self.settings.detail_sigma * iod),
        )

    def _with_teeth(
        self, face: AlignedFace, ingredients: Ingredients, identities: Sequence[str]
    ) -> Ingredients:
        """``ingredients`` with the mouth's interior from the donor set's most open photo when the patient's
        mouth is at least settings.finish_interior open (``mouth_interior`` in the finish); else as given."""
        least = self.settings.finish_interior
        if least <= 0 or expression(face.landmarks)[0] < least:
            return ingredients
        groups = self.bank.by_identity()
        average = self._open_mouth(ingredients.average, [groups[i] for i in identities], least)
        if average is ingredients.average:
            return ingredients
        iod = interocular(self.bank.reference)
        coarse = _coarse_deviation(average, ingredients.peers.centre, 0.04 * iod)
        return replace(ingredients, average=average, coarse=coarse)

    def _open_mouth(
        self, average: np.ndarray, donors: list[list[DonorPhoto]], least: float | None = None
    ) -> np.ndarray:
        """``average`` with the mouth's interior from the set's most open donor photo (surrogate_mouth.py),
        unchanged when no donor's mouth is at least ``least`` (settings.mouth_interior) open."""
        photo = open_donor(donors, self.settings.mouth_interior if least is None else least)
        if photo is None:
            return average
        if self._interior is None:  # the bank's reference shape alone decides it
            self._interior = interior_weight(self.bank.reference, self.bank.crop_size)
        return with_interior(average, self._common_tone(photo), self._interior)

    def _face_space(self) -> FaceSpace:
        """The bank's face space (surrogate_spread.FaceSpace), fitted on first use."""
        if self._space is None:
            iod = interocular(self.bank.reference)
            self._space = FaceSpace.fit(
                list(self.bank.by_identity().values()),
                self.bank.reference,
                lambda photo: _lightness(self._common_tone(photo)),
                self._anti_weight()[..., 0],
                0.25 * iod,
            )
        return self._space

    def _sexless(self, anti: np.ndarray) -> np.ndarray:
        """An anti-face term (S, S, 1 or 3; a lightness change) less its component along the bank's texture
        sex direction (settings.anti_sex_guard): a very feminine patient's deviation, flipped, is a
        masculine one (London-set 002 with the nose kept read male by the bench's and the engine's probe on
        every donor set, main and texture-spread runs alike)."""
        directions = self._face_space().sex_directions if self.settings.anti_sex_guard else None
        if directions is None:
            return anti
        axis = directions[1].astype(np.float64)
        along = float((anti[..., 0].astype(np.float64) * axis).sum())
        return (anti - (along * axis)[..., None]).astype(np.float32)

    def _spread(
        self,
        identity_seed: int,
        patient: tuple[np.ndarray, np.ndarray, str] | None = None,
        variant: int = 0,
        with_texture: bool = True,
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """The patient's keyed deviation (shape, texture lightness) in the bank's face space, or None.
        ``patient``: their landmarks, shape-free texture and sex; the step then points away from them.
        ``variant`` > 0: one of the patient's further keyed steps (``_shape_variants``)."""
        shape_scale, texture_scale = self.settings.spread_shape, self.settings.spread_texture
        if shape_scale <= 0 and texture_scale <= 0:
            return None
        self._face_space()
        assert self._space is not None
        key, away = spread_key(identity_seed, variant), None
        if patient is not None and self.settings.spread_away:
            landmarks, texture, sex = patient
            light = _lightness(texture) if self.settings.spread_texture_away else None  # else unread
            away = self._space.coordinates(landmarks, light, self.bank.reference, sex)
        # the texture's step stays keyed at random: pointed away from the patient's texture it turned
        # London-set patient 003 into a man by the sex probe (-0.32 -> +0.18 / +0.32 at rung 3, nothing
        # kept); the shape's pointed away kept her a woman (-0.61) and took her further (0.75 -> 0.85)
        guard, away_min = self.settings.spread_sex_guard, self.settings.spread_away_min
        shape = self._space.deviation(key, shape_scale, away, guard=guard, away_min=away_min)[0]
        if not with_texture:  # the shape step alone (the texture's left empty)
            return shape, np.zeros((0, 0), np.float32)
        texture_away = away if self.settings.spread_texture_away else None
        clip = self.settings.spread_texture_clip
        return shape, self._space.deviation(key, texture_scale, texture_away, guard, away_min, clip)[1]

    def _shape_variants(self, identity_seed: int, patient: tuple[np.ndarray, np.ndarray, str]) -> KeyedSteps:
        """The patient's further keyed shape steps (settings.spread_shape_variants), in keyed order: a rung
        whose outputs read as the other sex is made again with them (surrogate_ladder ``_other_step``).
        Made on first use (``KeyedSteps``): most groups never need them."""
        count = self.settings.spread_shape_variants
        possible = count > 0 and self.settings.spread_shape > 0
        count = count if possible else 0  # spread_shape off: no further steps, as before
        return KeyedSteps(lambda: self._shape_steps(identity_seed, patient, count), possible)

    def _shape_steps(
        self, identity_seed: int, patient: tuple[np.ndarray, np.ndarray, str], count: int
    ) -> tuple[np.ndarray, ...]:
        """The first ``count`` further keyed shape steps (none when the spread is off): each ``_spread(...,
        variant)``'s shape (its texture step, an (S, S) product per variant, is not made: only shapes are
        tried)."""
        variants = range(1, count + 1)
        steps = (self._spread(identity_seed, patient, variant, with_texture=False) for variant in variants)
        return tuple(step[0] for step in steps if step is not None)

    def _synthesize(
        self,
        face: AlignedFace,
        ingredients: Ingredients,
        tris: np.ndarray,
        preserve: tuple[Region, ...],
        strength: Strength,
        repel: Sequence[list[DonorPhoto]] = (),
        finish: bool = False,
        skip: frozenset[str] = frozenset(),
    ) -> tuple[np.ndarray, np.ndarray]:
        """One rung's synthetic crop and target shape. ``finish``: with the colour finish (surrogate_ladder
        ``_finished``: a flash's chroma, the lids' colour), made only for the rung the ladder chose. ``skip``:
        the parts left out of a preview (settings.preview_rungs: "detail", "relight", "highlights",
        "features", "poisson"), judged by the ladder in place of the full rung when it clearly fails."""
        size = self.bank.crop_size
        rung = _FaceRung(face, ingredients, strength, tuple(repel), finish, skip)
        texture, target = self._rung_base(rung, tris, preserve)
        opening = self.settings.eye_opening > 0 and (finish or not self.settings.eye_finish)
        if opening:  # on the unfolded target: the unfolding narrowed the eyes again
            target = self._opened(target, face.landmarks, tris)
        elif self.settings.eye_opening > 0:  # eye_finish: would the finish open an eye of this rung?
            opened = self._opened(target, face.landmarks, tris)
            ingredients.narrowed[strength] = not np.array_equal(opened, target)
        if "half" in skip:  # a preview made at half size (settings.preview_rungs)
            return self._half_size(face, texture, target, tris, preserve, ingredients.peers, skip)
        synth = piecewise_affine(
            texture, extended(self.bank.reference, size), extended(target, size), tris, size
        )
        skin = skin_mask(target, size)  # the colour match and the light's, read only by both
        synth = _match_colour(synth, target, ingredients.peers.skin, self.settings.max_std_ratio, skin)
        peers = ingredients.peers
        if "relight" not in skip:
            synth = relight(synth, target, peers.light, skin)
        chroma = self.settings.highlight_chroma if finish else 0.0
        if "highlights" not in skip:
            synth = tame_highlights(synth, target, peers.light, peers.highlight, chroma)
        if "features" not in skip:
            synth = match_features(synth, target, peers.features, self.settings.iris_darken)
        if _named(self.settings.brow_contrast, preserve) and (finish or not self.settings.brow_finish):
            synth = match_brows(synth, target, peers.brows)
        if finish:
            synth = match_lids(synth, target, peers.lids)
        blended = _poisson(
            synth,
            face,
            preserve,
            target,
            peers.coloured,
            peers.blend_sides,
            "paste" if "poisson" in skip else self.settings.poisson_solver,
            self.settings.hanging_fringe,
        )
        return blended, target

    def _rung_base(
        self, rung: _FaceRung, tris: np.ndarray, preserve: tuple[Region, ...]
    ) -> tuple[np.ndarray, np.ndarray]:
        """A rung's texture and unfolded target (before the eye opening), kept for the group
        (``_rung_bases``): a rung is often made again from the same inputs (a preview's rung in full, the
        chosen rung in the colour finish, a rung judged on its preview in full), and these ~8 ms (plus ~20
        per repelled donor) give the same bytes each time. Keyed by what they read; the rung is held so that
        the ids of its inputs stay theirs."""
        corners = rung.finish and self.settings.mouth_corners > 0 and Region.MOUTH not in preserve
        capped = self._capping(rung.strength, rung.finish)
        repelled = tuple(map(id, rung.repel))
        key = (id(rung.face), id(rung.ingredients), rung.strength, repelled, preserve, capped, corners)
        key += ("detail" in rung.skip, self._bounding)
        kept = self._rung_bases
        found = kept.get(key) if kept is not None else None
        if found is not None:
            return found[-2], found[-1]
        texture, target = self._made_base(rung, tris, preserve)
        if kept is not None:
            texture.flags.writeable = target.flags.writeable = False  # shared by the rungs that reuse them
            kept[key] = (rung, texture, target)
            while len(kept) > RUNG_BASES:
                kept.pop(next(iter(kept)))
        return texture, target

    def _made_base(
        self, rung: _FaceRung, tris: np.ndarray, preserve: tuple[Region, ...]
    ) -> tuple[np.ndarray, np.ndarray]:
        """``_rung_base`` made: the caricatured texture with its anti-face terms and detail; the target."""
        face, ingredients, strength = rung.face, rung.ingredients, rung.strength
        size, iod = self.bank.crop_size, interocular(self.bank.reference)
        mix = _caricature_texture(ingredients.average, ingredients.coarse, strength.texture)
        anti = strength.anti * ingredients.peers.anti
        texture = mix + widen(anti)  # widen: (S, S, 1) as 3 channels
        want = expression(face.landmarks)
        reduced = self.settings.repel_reduced_blur
        for photos in rung.repel:  # the same anti-face move, away from a donor the output came too close to
            photo = _closest(photos, want)
            donor, speckless = self._common_tone(photo), self._speckless(photo)
            term = strength.anti * self._sexless(
                _anti_face(mix, donor, self._anti_weight(), 0.25 * iod, speckless, reduced)
            )
            texture, anti = texture + widen(term), anti + term
        if self._capping(strength, rung.finish):  # settings.anti_cap: the strong rungs' anti-face held
            capped = held(anti, self.settings.anti_cap)
            texture, anti = texture + widen(capped - anti), capped
        texture = self._beardless(texture, anti, ingredients.peers.beardless)
        texture = soften(texture, ingredients.average, strength.soft or self.settings.soft_limit)
        shape = _caricature(ingredients.shape, ingredients.peers.shape_centre, strength.shape)
        texture = _sharpen(texture, self.settings.sharpen)
        detail = ingredients.detail
        if ingredients.peers.shaven:  # no donor's moustache or stubble on a clean-shaven patient
            weight, share = self._shave_weight(), self.settings.shave
            texture = shaved(texture, weight, self.bank.reference, share)
            detail = shaved_detail(detail, weight, self.bank.reference, share)
        if "detail" not in rung.skip:
            texture = _with_detail(texture, detail, self.settings.detail, self.settings.detail_sigma * iod)
        target = self._shaped(face.landmarks, shape, preserve, strength, bound=False)
        if self._bounding and folded(target, self.bank.reference, tris, size).any():
            # bounded to the bank's faces instead of pulled back towards the patient (surrogate_bound.py)
            target = self._shaped(face.landmarks, shape, preserve, strength, bound=True)
        if rung.finish and self.settings.mouth_corners > 0 and Region.MOUTH not in preserve:  # mouth corners
            target = keep_corners(target, face.landmarks, self.settings.mouth_corners)
        local = 0 <= strength.push <= self.settings.unfold_local
        unfold = unfold_locally if local else _without_folds
        target = unfold(target, face.landmarks, self.bank.reference, tris, size)
        return texture, target

    def _half_size(
        self,
        face: AlignedFace,
        texture: np.ndarray,
        target: np.ndarray,
        tris: np.ndarray,
        preserve: tuple[Region, ...],
        peers: _PeerBase,
        skip: frozenset[str],
    ) -> tuple[np.ndarray, np.ndarray]:
        """A preview's crop made at half the crop size from the rung's full-size texture and target: warp,
        colour, the parts not in ``skip`` and the Poisson blend on a quarter of the pixels (the self-check
        reads a ~150 px chip). Returns the half-size crop and target."""
        half = self.bank.crop_size // 2
        small = _halved(face, peers)
        target = _half_points(target)
        texture = cv2.resize(texture, (half, half), interpolation=cv2.INTER_AREA)
        reference = _half_points(self.bank.reference)
        synth = piecewise_affine(texture, extended(reference, half), extended(target, half), tris, half)
        skin = skin_mask(target, half)
        synth = _match_colour(synth, target, peers.skin, self.settings.max_std_ratio, skin)
        if "relight" not in skip:
            synth = relight(synth, target, small.light, skin)
        if "highlights" not in skip:
            synth = tame_highlights(synth, target, small.light, peers.highlight, 0.0)
        if "features" not in skip:
            synth = match_features(synth, target, peers.features, self.settings.iris_darken)
        solver = "paste" if "poisson" in skip else self.settings.poisson_solver
        hanging = self.settings.hanging_fringe
        blended = _poisson(synth, small.face, preserve, target, small.coloured, small.sides, solver, hanging)
        return blended, target

    def _capping(self, strength: Strength, finish: bool) -> bool:
        """Whether settings.anti_cap holds this rung's anti-face terms: on, a rung whose gain can carry them
        past the cap, and (with settings.anti_cap_finish) only in the finish."""
        cap = self.settings.anti_cap
        strong = cap > 0 and strength.anti * ANTI_CLIP > cap
        return strong and (finish or not self.settings.anti_cap_finish)

    def _shaped(
        self,
        patient: np.ndarray,
        shape: np.ndarray,
        preserve: tuple[Region, ...],
        strength: Strength,
        bound: bool,
    ) -> np.ndarray:
        """A rung's target shape before the fold pull-back: the donors' shape in the patient's pose with his
        expression, mouth caps, brow height and outline floor; ``bound``: held within the bank's faces
        (settings.shape_bound) before the expression is put back."""
        target = _target_shape(
            patient,
            shape,
            preserve,
            self.settings.shape_weight,
            replace(strength, jaw=0.0) if self.settings.keep_outline and strength.push <= 0 else strength,
            self.settings.expression_follow,
            _donor_fit(self.settings.inner_fit, preserve),
        )
        if bound:  # within the bank's faces; the patient's expression follows after
            target = self._bounded(target, preserve)
        target = self._follow_patient(target, patient, preserve, strength)
        if self.settings.mouth_opening >= 0:  # no wider open than the patient's (surrogate_mouth.py)
            target = cap_opening(target, patient, self.settings.mouth_opening)
        if self.settings.mouth_width >= 0:  # no wider than the patient's (surrogate_mouth.py)
            target = cap_width(target, patient, self.settings.mouth_width)
        target = keep_brow_height(target, patient, self.settings.brow_height)
        floor = self.settings.outline_floor
        wanted = Region.EYES in preserve or (self.settings.outline_floor_free and Region.NOSE not in preserve)
        if floor >= 0 and wanted:
            target = outline_floor(target, patient, floor * interocular(self.bank.reference))
        return target

    def _bounded(self, target: np.ndarray, preserve: tuple[Region, ...]) -> np.ndarray:
        """``target`` within settings.shape_bound × the bank's farthest face, in the bank's shape directions
        and off them (surrogate_bound.py); the preserved regions' landmarks do not move."""
        if self._shape_space is None:
            shapes = [p.landmarks for p in self.bank.photos]
            self._shape_space = ShapeSpace.fit(self.bank.reference, shapes)
        fixed = np.zeros(68, bool)
        for region in preserve:
            fixed[list(REGION_POINTS.get(region, ()))] = True
        return self._shape_space.bounded(target, fixed, self.settings.shape_bound)

    def _opened(self, target: np.ndarray, patient: np.ndarray, tris: np.ndarray) -> np.ndarray:
        """``target`` (unfolded) with the eyes opened to settings.eye_opening × the patient's, unless that
        folds a warp triangle that was not folded before (unfolding again would pull the whole face back
        towards the patient; a kept mouth's inner lips are folded against the bank's closed reference)."""
        opened = keep_eye_opening(target, patient, self.settings.eye_opening)
        size, reference = self.bank.crop_size, self.bank.reference
        new = folded(opened, reference, tris, size) & ~folded(target, reference, tris, size)
        return target if new.any() else opened

    def _follow_patient(
        self, target: np.ndarray, patient: np.ndarray, preserve: tuple[Region, ...], strength: Strength
    ) -> np.ndarray:
        """Expression and face frame of the patient on the free points of the target (surrogate_shape.py).
        The frame is left alone where it would undo a change made for privacy: on overshoot rungs (they
        widen outline, brows and eye spacing on purpose) and when the nose or eyes are kept (the kept region
        anchors the face already; there the rest must carry the whole change: linkage rank 1 rose 31 -> 44 %
        on 8 London-set pairs with the frame kept)."""
        free = np.ones(68, bool)
        for region in preserve:
            free[list(REGION_POINTS.get(region, ()))] = False
        if self._expression is None:
            shapes = [[p.landmarks for p in photos] for photos in self.bank.by_identity().values()]
            modes = self.settings.expression_modes
            self._expression = ExpressionModel.fit(self.bank.reference, shapes, modes)
        target = self._expression.transfer(target, patient, free)
        anchored = Region.NOSE in preserve or Region.EYES in preserve
        if self.settings.keep_frame and strength.push <= 0 and not anchored:
            target = keep_frame(target, patient, free)
        if strength.push <= 0 and _named(self.settings.outline_frame, preserve):
            target = keep_outline_frame(target, patient, free)
        return target

    def _detail_source(
        self, choice: DonorChoice, face: AlignedFace, profile: tuple[str, float]
    ) -> SkinSource | None:
        """The detail donor's skin (its photo closest in expression), for the band finer than the crop."""
        groups = self.bank.by_identity()
        donors = [groups[i] for i in choice.identities]
        donor = _closest(donors[detail_donor(donors, *profile)], expression(face.landmarks))
        return skin_source(donor.texture, skin_mask(self.bank.reference, self.bank.crop_size))

    def _cover(self, photo: DonorPhoto) -> np.ndarray:
        """Where the donor's texture shows skin rather than a fringe (cached per donor photo)."""
        key = id(photo)
        if key not in self._covers:
            self._covers[key] = skin_cover(photo.texture, self.bank.reference)
        return self._covers[key]

    def _neutral_light(self, photo: DonorPhoto) -> np.ndarray:
        """A donor's neutral photo's L* in the common tone, as ``mix_texture`` mixes it (cached per donor
        photo of the bank: a float Lab conversion each time, in every donor set holding the donor)."""
        key = id(photo)
        if key not in self._neutral:
            self._neutral[key] = neutral_lightness(self._common_tone(photo))
        return self._neutral[key]

    def _speckless(self, photo: DonorPhoto) -> np.ndarray:
        """A repelled donor's despeckled lightness in the common tone, as ``_anti_face`` takes it (cached per
        donor photo of the bank: the same on every rung that repels it; a median blur each time)."""
        key = id(photo)
        if key not in self._despeckled:  # kept as uint8: a median blur's levels, a quarter of the memory
            blur = 0.25 * interocular(self.bank.reference)
            self._despeckled[key] = _despeckled(self._common_tone(photo), blur).astype(np.uint8)
        return self._despeckled[key].astype(np.float32)

    def _common_tone(self, photo: DonorPhoto) -> np.ndarray:
        """The donor's texture with its skin moved to the bank's mean skin colour and contrast (Lab), so
        that donors of different tones average into an even skin instead of patches; the result is matched
        to the patient's skin afterwards."""
        key = id(photo)
        if key not in self._toned:
            if not self._toned:
                self._skin = skin_mask(self.bank.reference, self.bank.crop_size)
                labs = [_lab(p.texture)[self._skin] for p in self.bank.photos]
                self._tone = (np.mean([x.mean(0) for x in labs], 0), np.mean([x.std(0) for x in labs], 0))
            lab = _lab(photo.texture)
            mu, sd = lab[self._skin].mean(0), lab[self._skin].std(0) + 1e-3
            toned = (lab - mu) / sd * self._tone[1] + self._tone[0]
            self._toned[key] = cv2.cvtColor(np.clip(toned, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)
        return self._toned[key].astype(np.float32)

    def _patient_texture(self, faces: Sequence[AlignedFace], tris: np.ndarray) -> np.ndarray:
        """The group's shape-free texture: every face warped to the bank's reference shape, averaged."""
        size, ref = self.bank.crop_size, extended(self.bank.reference, self.bank.crop_size)
        warped = [piecewise_affine(f.image, extended(f.landmarks, size), ref, tris, size) for f in faces]
        return np.mean(np.stack(warped).astype(np.float32), axis=0)

    def _beardless(self, texture: np.ndarray, anti: np.ndarray, woman: bool) -> np.ndarray:
        """``texture`` with the darkening of its anti-face terms (``anti``, their sum) over the beard area
        × settings.anti_beard, for a woman: her smooth, light lower face flipped is a grey beard shadow
        (London-set 002 with the nose kept). Off (1), a man or dark skin (``_PeerBase.beardless``):
        ``texture`` itself."""
        share = self.settings.anti_beard
        if not woman or share >= 1.0:
            return texture
        return (texture - (1.0 - share) * self._beard_area() * np.minimum(anti, 0.0)).astype(np.float32)

    def _beard_area(self) -> np.ndarray:
        """beard_area of the bank's reference, made once (anti_beard and shave both use it)."""
        if self._beard is None:
            self._beard = beard_area(self.bank.reference, self.bank.crop_size)
        return self._beard

    def _shave_weight(self) -> np.ndarray:
        """(S, S, 1) where a clean-shaven patient's synthetic face is shaved (surrogate_shaven)."""
        if self._shave is None:
            self._shave = shave_weight(self._beard_area(), self.bank.reference)
        return self._shave

    def _anti_weight(self) -> np.ndarray:
        """(S, S, 1) weight of the anti-face term: the face, without the mouth (a smile there would turn
        into its negative) and the eyes, fading out towards the outline."""
        if self._anti is None:
            size, ref = self.bank.crop_size, self.bank.reference
            hull = cv2.convexHull(np.round(ref[:27]).astype(np.int32))
            weight = np.zeros((size, size), np.float32)
            cv2.fillConvexPoly(weight, hull, 1.0)
            iod = interocular(ref)
            holes = np.zeros_like(weight)
            cv2.fillPoly(holes, [np.round(ref[48:60]).astype(np.int32)], 1.0)
            holes = cv2.dilate(holes, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (int(0.3 * iod) | 1,) * 2))
            # the eyes too: a flipped iris or lash line turns into a pale, glassy eye
            eyes = np.zeros_like(weight)
            for points in (ref[36:42], ref[42:48]):
                cv2.fillPoly(eyes, [np.round(points).astype(np.int32)], 1.0)
            eyes = cv2.dilate(eyes, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (int(0.12 * iod) | 1,) * 2))
            if self.settings.anti_eyes > 0:  # nose kept: the eyes carry identity (surrogate_settings)
                eyes = (1.0 - self.settings.anti_eyes) * eyes
            weight = np.clip(weight - np.maximum(holes, eyes), 0, 1)
            self._anti = cv2.GaussianBlur(weight, (0, 0), 0.12 * iod)[..., None]
        return self._anti


def beardless(profile: tuple[str, float], settings: SurrogateSettings) -> bool:
    """Whether the anti-face may not darken this patient's lower face (settings.anti_beard): a woman
    (``profile``: header sex, else the engine's reading, and skin ITA) of skin at least ``anti_beard_ita``
    light."""
    return settings.anti_beard < 1.0 and profile[0] == "F" and profile[1] >= settings.anti_beard_ita


BEARD_JAW = tuple(range(1, 16))  # the outline from below the ear to below the other ear
BEARD_TOP = (45, 46, 47, 42, 39, 40, 41, 36)  # the lower lids, right to left: the area's top, moved down
BEARD_BELOW_LIDS = 0.15  # × inter-ocular distance: the lids' own shading (eye bags) stays the anti-face's


def beard_area(reference: np.ndarray, size: int) -> np.ndarray:
    """(S, S, 1) float32 weight of the lower face in the reference shape, where a shadow reads as a beard:
    from a little below the lower lids down to the jaw (cheeks, upper lip, chin, jaw), its edge softened."""
    iod = interocular(reference)
    top = reference[list(BEARD_TOP)] + np.array([0.0, BEARD_BELOW_LIDS * iod], np.float32)
    outline = np.concatenate([reference[list(BEARD_JAW)], top])
    mask = np.zeros((size, size), np.float32)
    cv2.fillPoly(mask, [np.round(outline).astype(np.int32)], 1.0)
    return cv2.GaussianBlur(mask, (0, 0), 0.1 * iod)[..., None]


def _named(settings: str, preserve: tuple[Region, ...]) -> bool:
    """Whether ``settings`` (comma-separated settings named by their kept region, "nothing" for none)
    names this one."""
    kept = "+".join(r.value for r in preserve) or "nothing"
    return kept in {name.strip() for name in settings.split(",")}


def _donor_fit(inner_fit: str, preserve: tuple[Region, ...]) -> tuple[int, ...]:
    """The landmarks the donor shape is fitted on in this setting (settings.inner_fit)."""
    return FIT_INNER if _named(inner_fit, preserve) else FIT_ALL


@dataclass
class _Half:
    """A face's patient side at half the crop size (a half-size preview's, settings.preview_rungs)."""

    face: AlignedFace
    light: np.ndarray | None
    coloured: np.ndarray | None
    sides: dict[tuple, _BlendSide] = field(default_factory=dict)


def _half_points(points: np.ndarray) -> np.ndarray:
    """Crop coordinates (pixel centres) at half the crop size, as INTER_AREA maps them."""
    return ((np.asarray(points, np.float32) + 0.5) / 2 - 0.5).astype(np.float32)


def _halve(image: np.ndarray | None) -> np.ndarray | None:
    if image is None:
        return None
    h, w = image.shape[:2]
    boolean = image.dtype.kind == "b"
    source = image.astype(np.float32) if boolean else image
    small = cv2.resize(source, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    return small > 0.5 if boolean else small


def _halved(face: AlignedFace, peers: _PeerBase) -> _Half:
    """The face's half-size side, made once and kept with its peer base."""
    key = ("half",)
    found = peers.blend_sides.get(key)
    if found is None:
        masks = {r: _halve(m) for r, m in face.masks.items()}
        small = replace(face, image=_halve(face.image), landmarks=_half_points(face.landmarks), masks=masks)
        found = _Half(small, _halve(peers.light), _halve(peers.coloured))
        peers.blend_sides[key] = found  # type: ignore[assignment]
    return found  # type: ignore[return-value]


def _poisson(
    synth: np.ndarray,
    face: AlignedFace,
    preserve: tuple[Region, ...],
    synth_landmarks: np.ndarray,
    coloured: np.ndarray | None = None,
    sides: dict[tuple, _BlendSide] | None = None,
    solver: str = "sine",
    hanging: bool = False,
) -> np.ndarray:
    """Seamless (Poisson) clone of the synthetic face into the patient's crop; preserved regions are holes.

    The domain is where both faces are: beyond a narrower synthetic outline the warped texture holds the
    donors' hair and background, which would show as dark or white patches on the cheek. ``sides``: this
    face's cache of ``_blend_side`` (``_PeerBase.blend_sides``); ``solver``: settings.poisson_solver;
    ``hanging``: settings.hanging_fringe."""
    from anonymizer.faces.regions import RegionSettings, region_mask

    size = synth.shape[0]
    key = (preserve, size)
    side = sides.get(key) if sides is not None else None
    if side is None:
        side = _blend_side(face, preserve, size, coloured, hanging)
        if sides is not None:
            sides[key] = side
    synthetic = region_mask(synth_landmarks, [Region.FACE], (size, size), settings=RegionSettings(0.0))
    mask = (side.domain & (np.asarray(synthetic) > 0.5)).astype(np.uint8) * 255
    # Keep the boundary on the patient's skin: at the outline it may touch hair or background, whose values
    # the Poisson solve would otherwise spread into the face as dark smears.
    mask = inset_domain(mask, face.landmarks, POISSON_INSET, JAW_INSET)
    synth = broad_shading(synth, face.image, mask > 0, SHADING_SIGMA * interocular(face.landmarks))
    mask[side.closed] = 0
    synth = ease_into_kept(synth, face.image, side.kept, face.landmarks, side.ring)
    base = boundary_base(face.image, synth, face.landmarks, side.kept, coloured, side.hair)
    mask[:3, :] = mask[-3:, :] = 0
    mask[:, :3] = mask[:, -3:] = 0
    if not mask.any():
        return face.image.copy()
    outside = mask == 0  # before the clone, which may write into its mask
    if solver == "sine":
        cloned = poisson.clone(synth, base, mask)
    elif solver == "paste":  # a preview's (settings.preview_rungs): the shaded face laid in, no solve
        cloned = base.copy()
        cv2.copyTo(synth, mask, cloned)
    else:
        x, y, w, h = cv2.boundingRect(mask)
        cloned = cv2.seamlessClone(synth, base, mask, (x + w // 2, y + h // 2), cv2.NORMAL_CLONE)
    # outside the domain: the patient's photo (OpenCV's masked copy: the same bytes as numpy's broadcast
    # ``np.copyto(..., where=)``, ~100x faster)
    cv2.copyTo(face.image, outside.view(np.uint8), cloned)
    return lay_over(cloned, face.image, side.matte)


def _blend_side(
    face: AlignedFace,
    preserve: tuple[Region, ...],
    size: int,
    coloured: np.ndarray | None,
    hanging: bool = False,
) -> _BlendSide:
    """The Poisson blend's masks that only the patient's crop and the kept regions decide."""
    from anonymizer.faces.regions import RegionSettings, region_mask

    domain = face.masks.get(Region.FACE)
    if domain is None:
        domain = region_mask(face.landmarks, [Region.FACE], (size, size), settings=RegionSettings(0.0))
    kept = np.zeros((size, size), bool)
    for region in preserve:
        if region in face.masks:
            kept |= np.asarray(face.masks[region]) > 0.5
    return _BlendSide(
        domain=np.asarray(domain) > 0.5,
        kept=kept,
        closed=kept | fringe(face.image, face.landmarks, coloured),
        ring=kept_ring(kept, face.landmarks) if kept.any() else None,
        hair=boundary_hair(face.image, face.landmarks, kept, coloured),
        matte=hanging_matte(face.image, face.landmarks, coloured) if hanging else None,
    )
