"""The surrogate's strength ladder and donor-set re-draws (surrogate.py's engine mixes this in): per donor set
the rungs are climbed until the group's outputs pass the self-check (far from the patient, enough real faces
nearer to them than the patient, no donor matched, and one person across the group's photos)."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from anonymizer.donors import DonorPhoto
from anonymizer.engines.base import AlignedFace
from anonymizer.engines.surrogate_cloud import cloud_centre, reach
from anonymizer.engines.surrogate_colour import detail_donor
from anonymizer.engines.surrogate_donors import DonorChoice, apparent_sex
from anonymizer.engines.surrogate_identity import identity_coefficients, identity_key
from anonymizer.engines.surrogate_settings import Strength
from anonymizer.engines.surrogate_sex import SexProbe
from anonymizer.engines.surrogate_spread import NO_STEPS, KeyedSteps
from anonymizer.engines.surrogate_synthesis import Ingredients, Synthesis, _named, _PeerBase
from anonymizer.faces.detect import landmarks_68
from anonymizer.faces.verify import (
    VerifySettings,
    closer_than_input,
    descriptor,
    distance,
    torch_descriptor,
    verify_face,
)
from anonymizer.plans import Region

log = logging.getLogger("anonymizer.engines.surrogate")

SAME_IDENTITY = 0.45  # a bank identity this close to the patient is the patient: not a reference face
_VERIFY = VerifySettings()
VERIFY_DISTANCE = _VERIFY.threshold + _VERIFY.margin  # verification fails an output this near its patient
# verified_pick's check of a candidate that would replace the ladder's pick, on the crop: verification's
# own with this much more margin (stricter, never looser): the crop read 099's candidates up to ~0.015
# farther from him than the pasted photos did (0.65 -> 0.637)
CROP_MARGIN = 0.02
CROP_VERIFY = replace(_VERIFY, margin=_VERIFY.margin + CROP_MARGIN)


@dataclass(frozen=True)
class _Common:
    """What every donor set of one group shares."""

    tris: np.ndarray
    donor_descs: np.ndarray
    reference: list[np.ndarray]  # per identity (n, 128): the linkage population, every real face of the bank
    bases: list[_PeerBase]  # per face
    profile: tuple[str, float] = ("", float("nan"))  # the patient's sex and age (header, else estimated)
    spread: tuple[np.ndarray, np.ndarray] | None = None  # the patient's keyed deviation (surrogate_spread)
    population_rank: int | None = None  # this group's linkage aim (None: settings.population_rank)
    # the patient's further keyed shape steps (settings.spread_shape_variants, made on first use; empty = off)
    shape_variants: KeyedSteps = NO_STEPS
    avoid: _Avoid | None = None  # other patients' issued identities to keep away from (None: no store)


_Judgement = tuple[bool, tuple[float, ...], bool, bool]  # Ladder._judge: passed, score, far, one person


@dataclass(frozen=True)
class RungRecipe:
    """What makes a rung (again): each face's ingredients, the strength and the donors repelled so far.
    ``repel`` holds the bank's own photo lists, and ``prepared`` the same ingredient objects, so a rung made
    again from its recipe reuses its textures (``Synthesis._rung_base`` keys by their ids)."""

    prepared: Sequence[Ingredients]  # per face
    strength: Strength
    repel: tuple[list[DonorPhoto], ...] = ()  # per donor some earlier rung's output matched


@dataclass(frozen=True)
class _Check:
    away: float  # distance to the patient
    donor: str | None  # the identity of a bank face it matches, or None
    closer: int  # reference identities nearer to it than the patient is
    usable: int  # reference identities counted
    out: np.ndarray | None = None  # the output's descriptor (None: the patient's face has none)
    sex: str = ""  # the output's apparent sex ("" unknown)
    to_donor: float = float("inf")  # the distance to the nearest bank face (settings.preview_rungs reads it)


@dataclass(frozen=True)
class _Attempt:
    choice: DonorChoice
    level: int
    crops: list[np.ndarray]
    reference: list[np.ndarray]  # per identity (n, 128): the bank's real faces
    passed: bool
    score: tuple[
        float, ...
    ]  # (passed, likely to verify, sex kept, beyond verification's distance, no donor matched, fewest nearer
    # identities, distance): larger is better
    split: bool = False  # far from the patient but the group's outputs are two people
    remake: RungRecipe | None = None  # what makes this rung again: the colour finish, further shape steps
    outs: tuple[np.ndarray, ...] = ()  # the outputs' self-check descriptors (the identity the store records)
    preview: bool = False  # judged on its preview (settings.preview_rungs): not the full rung's crops

    @property
    def lost_sex(self) -> bool:
        """Whether this rung's outputs read as the other sex (the score's "sex kept" place; a set that
        climbed no rung has only a placeholder score and lost nothing)."""
        return _sex_lost(self.score)


@dataclass
class _Avoid:
    """One group's search for a rung away from other patients' issued identities (settings.issued_distance,
    anonymizer.issued): a rung that passes every other test but lies within ``reach`` of one of ``issued``
    does not pass, and the ladder climbs on for at most ``budget`` further rungs or keyed-step remakes
    (across donor sets); when none avoids them, ``fallback`` (the first rung that passed otherwise: the
    ladder's pick without a store) or ``farthest`` (settings.issued_fallback) is used."""

    issued: np.ndarray  # (n, 128) other patients' identities
    reach: float
    budget: int
    fallback: _Attempt | None = None
    spent: int = 0  # rungs tried since the fallback was found
    farthest: tuple[float, _Attempt] | None = None  # (gap, rung): the passing rung farthest from them

    def gap(self, checks: Sequence[_Check]) -> float:
        """The distance from the outputs to the nearest issued identity."""
        outs = [c.out for c in checks if c.out is not None]
        if not outs:
            return float("inf")
        return float(np.linalg.norm(np.stack(outs)[:, None] - self.issued[None], axis=2).min())

    def clear(self, attempt: _Attempt, checks: Sequence[_Check]) -> bool:
        """Whether a rung that passed the self-check also keeps away from the issued identities (counts the
        rung against the budget once a fallback exists; the first that does not becomes the fallback)."""
        if self.fallback is not None:
            self.spent += 1
        gap = self.gap(checks)
        if gap >= self.reach:
            return True
        if self.fallback is None:
            self.fallback = attempt
        if self.farthest is None or gap > self.farthest[0]:
            self.farthest = (gap, attempt)
        return False

    def spend(self) -> None:
        """Count a rung that did not pass against the budget (once a fallback exists)."""
        self.spent += self.fallback is not None

    @property
    def exhausted(self) -> bool:
        return self.fallback is not None and self.spent >= self.budget


def _sex_lost(score: tuple[float, ...]) -> bool:
    """Whether a rung's score (``_Attempt.score``) says its outputs read as the other sex."""
    return len(score) > 2 and score[2] < 1


def _donor_weights(choice: DonorChoice, spread: float) -> np.ndarray:
    """Mixing weights of the donors, keyed to the donor set: uneven weights (Dirichlet with concentration
    ``spread``) keep patients who share donors apart; 0 gives the plain mean."""
    k = len(choice.identities)
    if spread <= 0:
        return np.full(k, 1.0 / k)
    key = hashlib.sha256("|".join(choice.identities).encode()).digest()[:8]
    return np.random.default_rng(int.from_bytes(key, "big")).dirichlet(np.full(k, spread))


def _reseed(seed: int, attempt: int) -> int:
    if attempt == 0:
        return seed
    return int.from_bytes(
        hashlib.sha256(f"surrogate-donor-set|{seed}|{attempt}".encode()).digest()[:8], "big"
    )


def _kept_sex(checks: Sequence[_Check], sex: str) -> bool:
    """Whether every output is of the patient's sex (unknown on either side: not held against the rung)."""
    return all(not c.sex or not sex or c.sex == sex for c in checks)


class Ladder(Synthesis):
    """The rung ladder and group self-check half of SurrogateEngine."""

    trace: list[tuple]
    _sex_probe: SexProbe | None = None  # fitted on the bank on first use (settings.sex_reader "probe")
    _centres: dict[str, np.ndarray]  # the bank's mean descriptor per sex (self_check_centre_distance)
    _clouds: dict[str, np.ndarray]  # the synthetic cloud's centre per sex (spread_pick)
    last_pick: str  # the last group's further steps (spread_pick): "passed/tried moved|kept"
    _rungs_tried: list[tuple[_Attempt, bool]] | None = None  # (rung, bounded pass): verified_pick 2

    def _near_patient(self, score: tuple[float, ...], common: _Common | None = None) -> bool:
        """Whether the best attempt so far failed by staying near its patient (too close, or too few real
        faces nearer), rather than by matching a donor."""
        return score[0] < 1 and (
            score[-2] < self._aim(common) or score[-1] <= self.settings.self_check_distance
        )

    def _aim(self, common: _Common | None) -> int:
        """The group's linkage aim: real faces of the bank that must lie nearer to each output."""
        if common is None or common.population_rank is None:
            return self.settings.population_rank
        return common.population_rank

    def _rungs(self, preserve: tuple[Region, ...]) -> tuple[Strength, ...]:
        """The ladder for a group keeping ``preserve``: settings.nose_rungs appended with the nose kept."""
        if Region.NOSE in preserve:
            return self.settings.ladder + self.settings.nose_rungs
        return self.settings.ladder

    def _sets(self, preserve: tuple[Region, ...]) -> int:
        """Donor sets tried for a group keeping ``preserve``: settings.nose_donor_sets with the nose kept,
        settings.mouth_donor_sets with the mouth kept and not the nose (never fewer than donor_sets);
        settings.bound_donor_sets in shape_bound's second pass when set."""
        if self._bounding and self.settings.bound_donor_sets > 0:  # shape_bound's second pass
            return self.settings.bound_donor_sets
        if Region.NOSE in preserve:
            return max(self.settings.donor_sets, self.settings.nose_donor_sets)
        if Region.MOUTH in preserve:
            return max(self.settings.donor_sets, self.settings.mouth_donor_sets)
        return self.settings.donor_sets

    def _group_aim(self, preserve: tuple[Region, ...]) -> int:
        """The linkage aim for a group keeping ``preserve``: settings.nose_population_rank with the nose
        kept, settings.mouth_population_rank with the mouth kept and not the nose (never below
        population_rank, which a rule file may raise; a test that is off, 0, stays off)."""
        own = self.settings.population_rank
        if own <= 0:
            return own
        if Region.NOSE in preserve:
            return max(own, self.settings.nose_population_rank)
        if Region.MOUTH in preserve:
            return max(own, self.settings.mouth_population_rank)
        return own

    def _donor_distances(self, choice: DonorChoice, patient: dict[str, Any]) -> list[float]:
        groups = self.bank.by_identity()
        return [
            min(distance(p.descriptor, d) for p in groups[i] for d in patient["descriptors"])
            for i in choice.identities
        ]

    def _climb(
        self,
        faces: Sequence[AlignedFace],
        choice: DonorChoice,
        common: _Common,
        preserve: tuple[Region, ...],
        weights: np.ndarray | None = None,
    ) -> _Attempt:
        """The strength ladder for one donor set: the first rung whose faces all pass the self-check, else the
        rung most likely to pass verification."""
        groups = self.bank.by_identity()
        donors = {i: groups[i] for i in choice.identities}
        if weights is None:
            weights = _donor_weights(choice, self.settings.donor_spread)
        coefficients = None
        if self.settings.typicality > 0 or self.settings.shape_typicality > 0:
            coefficients = identity_coefficients(identity_key(choice.seed, choice.identities), len(donors))
        reference = common.reference
        at = detail_donor(list(donors.values()), *common.profile)
        prepared: Sequence[Ingredients] = [
            self._ingredients(face, list(donors.values()), base, weights, at, coefficients, common.spread)
            for face, base in zip(faces, common.bases, strict=True)
        ]
        repel: list[list[DonorPhoto]] = []  # donors some output matched: later rungs move away from them too
        far_all, best = False, _Attempt(choice, 0, [], reference, False, (-1.0,))
        matched: list[tuple[str | None, ...]] = []  # per rung tried: the donor each output matched
        step = common.spread[0] if common.spread is not None else None  # the shape step in ``prepared``
        clear = True  # the rung before failed clearly (settings.preview_rungs)
        for level, strength in enumerate(self._rungs(preserve)):
            if strength.push > 0 and far_all:
                break  # already far from the patient: keep the plausible rung below
            recipe = RungRecipe(prepared, strength, tuple(repel))
            previewed = self._previewed(faces, recipe, common, preserve) if clear else None
            made, checks, (passed, score, far_all, together) = previewed or self._rung(
                faces, recipe, common, preserve
            )
            clear = self._clearly_failed(checks, score, common)  # the next rung is previewed only after one
            if not passed and _sex_lost(score) and self.settings.sex_miss_anti != 1.0 and strength.anti > 0:
                rescued = self._sex_rescue(faces, recipe, common, preserve)
                if rescued is not None:
                    made, checks, (passed, score, far_all, together), recipe = rescued
            if not passed and _sex_lost(score) and step is not None and common.shape_variants:
                floor = float(self.settings.spread_variants_verifiable)  # 1: only a step likely to verify
                varied = self._other_step(faces, recipe, step, common, preserve, floor)
                if varied is not None:
                    recipe, step, made, checks, (passed, score, far_all, together) = varied
                    prepared = recipe.prepared  # later rungs keep the step that kept the sex
            if passed:
                passed, score, far_all = self._among_strangers(score, checks, faces, choice, common)
            closest, nearer = score[-1], int(score[-2])
            self.trace.append((choice.seed, choice.tier, level, closest, nearer, [c.donor for c in checks]))
            split = far_all and not together
            outs = tuple(c.out for c in checks if c.out is not None)
            crops = [c for c, _ in made]
            current = _Attempt(choice, level, crops, reference, passed, score, split, recipe, outs)
            current = replace(current, preview=previewed is not None)
            if self._rungs_tried is not None:  # verified_pick 2: every rung is a candidate
                self._rungs_tried.append((current, self._bounding))
            if common.avoid is not None and passed:  # another patient's issued identity near: climb on
                passed = common.avoid.clear(current, checks)
                stepped = None if passed else self._issued_step(faces, current, step, common, preserve)
                current = stepped or replace(current, passed=passed)  # another keyed shape step avoids them
                passed = current.passed
            elif common.avoid is not None:
                common.avoid.spend()
            if passed:
                return self._widest(faces, current, step, common, preserve)
            # dlib's distance is not monotonic in strength: remember the rung most likely to verify
            best = max(best, current, key=lambda a: a.score)
            for c in checks:
                if c.donor is not None and groups[c.donor] not in repel:
                    repel.append(groups[c.donor])
            matched.append(tuple(c.donor for c in checks))
            if stuck_on_donor(matched, self.settings.stuck_donor_rungs):
                break  # repelled on every rung and still that donor: the next set is likelier to pass
            if common.avoid is not None and common.avoid.exhausted:
                break
            log.info("surrogate strength raised", extra={"level": level + 1})
        if far_all and best.score[0] <= 0:  # > 0: a rung passed the general test (_among_strangers)
            # far enough but still near a donor after the last rung tried: verification decides
            return self._in_full(current, faces, common, preserve)
        return self._in_full(best, faces, common, preserve)

    def _rung(
        self,
        faces: Sequence[AlignedFace],
        recipe: RungRecipe,
        common: _Common,
        preserve: tuple[Region, ...],
        skip: frozenset[str] = frozenset(),
    ) -> tuple[list, list[_Check], _Judgement]:
        """One rung made for every face of the group and judged (made, checks, judgement); ``skip``: a
        preview's parts left out (settings.preview_rungs)."""
        made, checks = self._remade(faces, recipe, common, preserve, skip)
        return made, checks, self._judge(checks, common)

    def _previewed(
        self, faces: Sequence[AlignedFace], recipe: RungRecipe, common: _Common, preserve: tuple[Region, ...]
    ) -> tuple[list, list[_Check], _Judgement] | None:
        """settings.preview_rungs: the rung made without the parts named there and judged; its reading
        stands for the full rung's when it clearly fails (``_clearly_failed``). None: off, or the full rung
        is to be made (a rung that may pass is always judged in full, so a pass is the full rung's). The
        ladder previews a rung only after one that clearly failed: after a near one the preview would seldom
        spare the full rung and only add its cost. Off with verified_pick 2 or an issued store, which keep
        every rung tried."""
        parts = frozenset(p.strip() for p in self.settings.preview_rungs.split(",") if p.strip())
        if not parts or self._rungs_tried is not None or common.avoid is not None:
            return None
        made, checks, judged = self._rung(faces, recipe, common, preserve, parts)
        return (made, checks, judged) if self._clearly_failed(checks, judged[1], common) else None

    def _clearly_failed(self, checks: Sequence[_Check], score: tuple[float, ...], common: _Common) -> bool:
        """Whether a rung's reading fails by more than a preview's error (``_near_pass``), the sex kept."""
        return score[0] <= 0 and not _sex_lost(score) and not self._near_pass(checks, common)

    def _near_pass(self, checks: Sequence[_Check], common: _Common) -> bool:
        """Whether a preview that failed could read otherwise in full: some output within
        ``preview_margin`` of the donor distance (which donors later rungs repel), or no output clearly
        failing (a donor matched, two or more real faces too few nearer, or nearer the patient than the
        self-check's distance by more than the margin)."""
        margin, aim = self.settings.preview_margin, self._aim(common)
        if any(abs(c.to_donor - self.settings.self_check_donor_distance) <= margin for c in checks):
            return True
        return not any(
            c.donor is not None
            or c.closer < min(aim, c.usable) - 1
            or c.away <= self.settings.self_check_distance - margin
            for c in checks
        )

    def _in_full(
        self, attempt: _Attempt, faces: Sequence[AlignedFace], common: _Common, preserve: tuple[Region, ...]
    ) -> _Attempt:
        """A rung judged on its preview (settings.preview_rungs) made in full and judged again: the crops the
        ladder returns are always the full synthesis's."""
        if not attempt.preview or attempt.remake is None:
            return attempt
        made, checks, (_, score, far_all, together) = self._rung(faces, attempt.remake, common, preserve)
        outs = tuple(c.out for c in checks if c.out is not None)
        crops = [c for c, _ in made]
        split = far_all and not together
        return replace(attempt, crops=crops, score=score, split=split, outs=outs, preview=False)

    def _issued_step(
        self,
        faces: Sequence[AlignedFace],
        passing: _Attempt,
        step: np.ndarray | None,
        common: _Common,
        preserve: tuple[Region, ...],
    ) -> _Attempt | None:
        """A rung that passed but lies near another patient's issued identity, made again with each of the
        patient's further keyed shape steps (settings.issued_variants, ``_Common.shape_variants``) within the
        check's budget: the first that passes the same self-check and avoids them, or None.
        Keyed like the sex's variants: the same patient tries the same steps in the same order."""
        avoid = common.avoid
        if not self.settings.issued_variants or avoid is None or step is None or passing.remake is None:
            return None
        if avoid.exhausted:
            return None
        for moved, _, made, checks in self._stepped(faces, passing.remake, step, common, preserve):
            passed, score, _, _ = self._judge(checks, common)
            if passed:
                passed, score, _ = self._among_strangers(score, checks, faces, passing.choice, common)
            if not passed:
                avoid.spend()
            else:
                outs = tuple(c.out for c in checks if c.out is not None)
                crops = [c for c, _ in made]
                attempt = replace(passing, crops=crops, score=score, remake=moved, outs=outs)
                if avoid.clear(attempt, checks):
                    log.info(
                        "surrogate rung remade with another keyed shape step: it avoids issued identities"
                    )
                    return attempt
            if avoid.exhausted:
                break
        return None

    def _widest(
        self,
        faces: Sequence[AlignedFace],
        passing: _Attempt,
        step: np.ndarray | None,
        common: _Common,
        preserve: tuple[Region, ...],
    ) -> _Attempt:
        """A passing rung made again with up to ``settings.spread_pick`` of the patient's further keyed shape
        steps: of the rung and those remakes that pass the same self-check, the one whose nearest output lies
        farthest from the synthetic cloud's centre of the patient's sex (``surrogate_cloud``); the rung itself
        when off, with an issued-identities store, or when no remake lies farther. Keyed: the same patient
        tries the same steps, and no other patient's output takes part, so the order of patients does not
        matter."""
        tries = self.settings.spread_pick
        if tries <= 0 or common.avoid is not None or step is None or passing.remake is None:
            return passing
        sex = common.profile[0]
        if sex not in self._clouds:
            self._clouds[sex] = cloud_centre(self.bank, sex, self.settings.spread_pick_cloud)
        centre = self._clouds[sex]
        best, farthest, tried, passing_steps = passing, reach(passing.outs, centre), 0, 0
        remakes = self._stepped(faces, passing.remake, step, common, preserve)
        for _, (moved, _, made, checks) in zip(range(tries), remakes, strict=False):
            passed, score, _, _ = self._judge(checks, common)
            if passed:
                passed, score, _ = self._among_strangers(score, checks, faces, passing.choice, common)
            tried, passing_steps = tried + 1, passing_steps + passed
            outs = tuple(c.out for c in checks if c.out is not None)
            if passed and reach(outs, centre) > farthest:
                crops = [c for c, _ in made]
                best = replace(passing, crops=crops, score=score, remake=moved, outs=outs)
                farthest = reach(outs, centre)
        self.last_pick = f"{passing_steps}/{tried} {'moved' if best is not passing else 'kept'}"
        if best is not passing:
            log.info("surrogate rung remade with another keyed shape step: farther from the synthetic centre")
        return best

    def _among_strangers(
        self,
        score: tuple[float, ...],
        checks: Sequence[_Check],
        faces: Sequence[AlignedFace],
        choice: DonorChoice,
        common: _Common,
    ) -> tuple[bool, tuple[float, ...], bool]:
        """A passing rung's judgement (passed, score, far from the patient; ``_judge``) with
        ``settings.population_strangers`` (0 = off): the rung must also have that many bank identities
        that are NOT its donors nearer to every output than the patient. An output mixed from its donors
        lies near them by construction, so the general test was met by donors while an attacker's gallery
        of strangers still ranked the patient 5th or nearer. A rung that passed only the general test
        scores 0.5 (between a pass and a failure), its nearer count being the strangers', and the ladder
        climbs on; when no set passes, the best such rung is used."""
        aim = self.settings.population_strangers
        if aim <= 0:
            return True, score, True
        donors = set(choice.identities)
        ids = sorted(self.bank.by_identity())
        strangers = [r for i, r in zip(ids, common.reference, strict=True) if i not in donors]
        slack = self.settings.self_check_rank_slack
        counts = [
            closer_than_input(c.out, f.descriptor, strangers, SAME_IDENTITY, slack)
            for c, f in zip(checks, faces, strict=True)
            if c.out is not None and f.descriptor is not None
        ]
        nearer = min((closer for closer, _ in counts), default=0)
        if all(closer >= min(aim, usable) for closer, usable in counts):
            return True, score, True
        return False, (0.5, *score[1:-2], float(nearer), score[-1]), False

    def _sex_rescue(
        self, faces: Sequence[AlignedFace], recipe: RungRecipe, common: _Common, preserve: tuple[Region, ...]
    ) -> tuple[list, list[_Check], _Judgement, RungRecipe] | None:
        """A rung whose outputs read as the other sex made again with the anti-face × ``sex_miss_anti``
        (made, checks, judgement, recipe), or None when the remade rung does not keep the sex either."""
        strength = recipe.strength
        weaker = replace(recipe, strength=replace(strength, anti=strength.anti * self.settings.sex_miss_anti))
        made, checks = self._remade(faces, weaker, common, preserve)
        judged = self._judge(checks, common)
        if _sex_lost(judged[1]):
            return None
        log.info("surrogate rung remade with a weaker anti-face: it kept the sex")
        return made, checks, judged, weaker

    def _stepped(
        self,
        faces: Sequence[AlignedFace],
        recipe: RungRecipe,
        step: np.ndarray,
        common: _Common,
        preserve: tuple[Region, ...],
    ) -> Iterator[tuple[RungRecipe, np.ndarray, list, list[_Check]]]:
        """The rung made again with each of the patient's further keyed shape steps in place of ``step``, one
        at a time as asked (recipe, step, made, checks): the sex's and the issued check's variants."""
        for other in common.shape_variants:
            if other is step:
                continue
            shifted = [replace(i, shape=i.shape - step + other) for i in recipe.prepared]
            moved = replace(recipe, prepared=shifted)
            made, checks = self._remade(faces, moved, common, preserve)
            yield moved, other, made, checks

    def _remade(
        self,
        faces: Sequence[AlignedFace],
        recipe: RungRecipe,
        common: _Common,
        preserve: tuple[Region, ...],
        skip: frozenset[str] = frozenset(),
    ) -> tuple[list, list[_Check]]:
        """A rung made from ``recipe``: (made, checks) per face; ``skip``: a preview's parts left out
        (settings.preview_rungs)."""
        previewing = {"skip": skip} if skip else {}  # a full rung is called as before (and as fakes take it)
        strength, repel = recipe.strength, recipe.repel
        made = [
            self._synthesize(face, ingredients, common.tris, preserve, strength, repel, **previewing)
            for face, ingredients in zip(faces, recipe.prepared, strict=True)
        ]
        checks = [
            self._distinct(
                crop, target, face, common.donor_descs, common.reference, self._others(faces, face)
            )
            for (crop, target), face in zip(made, faces, strict=True)
        ]
        return made, checks

    def _other_step(
        self,
        faces: Sequence[AlignedFace],
        recipe: RungRecipe,
        step: np.ndarray,
        common: _Common,
        preserve: tuple[Region, ...],
        verifiable: float = 0.0,
    ) -> tuple[RungRecipe, np.ndarray, list, list[_Check], _Judgement] | None:
        """A rung whose outputs read as the other sex made again with each of the patient's further keyed
        shape steps (``_Common.shape_variants``) in place of ``step``: (recipe, step, made, checks,
        judgement) of the one that scores best in the self-check among those that keep the sex and are at
        least ``verifiable`` likely to verify (the score's place 1; 0 = any), or None.
        Deterministic: the same patient tries the same steps, so their photos, now or later, stay one
        person."""
        found = None
        for moved, other, made, checks in self._stepped(faces, recipe, step, common, preserve):
            judged = self._judge(checks, common)
            eligible = not _sex_lost(judged[1]) and judged[1][1] >= verifiable
            if eligible and (found is None or judged[1] > found[-1][1]):
                found = (moved, other, made, checks, judged)
                if judged[0]:
                    break  # it passes: no other step can score higher
        if found is not None:
            log.info("surrogate rung remade with another keyed shape step: it kept the sex")
        return found

    def _judge(self, checks: Sequence[_Check], common: _Common) -> tuple[bool, tuple[float, ...], bool, bool]:
        """A rung's outcome: (passed, score (larger is better), far from the patient, one person)."""
        closest = min(c.away for c in checks)
        far_all = closest > self.settings.self_check_distance and not any(
            c.closer < min(self._aim(common), c.usable) for c in checks
        )
        together = self._one_person(checks)
        kept_sex = _kept_sex(checks, common.profile[0])
        passed = far_all and together and kept_sex and all(c.donor is None for c in checks)
        passed = passed and self._off_centre(checks, common.profile[0])
        if passed and self.settings.sex_pass_probe:
            passed = self._probe_keeps_sex(checks, common.profile[0])
        verifiable = together and all(c.away > 0.66 and c.closer >= min(1, c.usable) for c in checks)
        nearer = min(c.closer for c in checks)
        # constant unless best_avoids_donors, and then only among attempts likely to verify: between two
        # that are not, the one farther from the patient verifies more often, donor or not (London-set 003,
        # nose kept: its farthest rung matched a donor; the nearer donor-free one failed verification)
        avoid = self.settings.best_avoids_donors and verifiable
        donor_free = float(not avoid or all(c.donor is None for c in checks))
        # constant unless best_over_threshold: among attempts not likely to verify, one beyond verification's
        # distance can still pass, one within it cannot, however many real faces lie nearer
        over = float(not self.settings.best_over_threshold or closest > VERIFY_DISTANCE)
        score = (float(passed), float(verifiable), float(kept_sex), over, donor_free, float(nearer), closest)
        return passed, score, far_all, together

    def _finished(
        self, chosen: _Attempt, faces: Sequence[AlignedFace], common: _Common, preserve: tuple[Region, ...]
    ) -> _Attempt:
        """The chosen rung made again with the colour finish (a tamed flash's chroma, the lids' colour), kept
        only when the group still passes the same self-check (a rung that did not pass: no less likely to
        verify, ``_no_worse``); else the rung as the ladder chose it. Made on every rung, the finish moved
        each output's identity a little and so changed which rung and set passed: 013 with the mouth kept
        lost a photo and linkage rose (docs/face-engine.md). Here the choice is the one made without it."""
        brows = self.settings.brow_finish and _named(self.settings.brow_contrast, preserve)
        colour = self.settings.highlight_chroma > 0 or self.settings.lid_colour
        eyes = self.settings.eye_finish and self.settings.eye_opening > 0
        capped = self.settings.anti_cap_finish and self.settings.anti_cap > 0  # its rung: _capping
        mouth = self.settings.mouth_corners > 0 or self.settings.finish_interior > 0
        corners = mouth and Region.MOUTH not in preserve  # the free mouth's corners or teeth
        if chosen.remake is None or not (colour or brows or eyes or capped or corners):
            return chosen
        recipe = chosen.remake
        if corners and self.settings.finish_interior > 0:
            identities = chosen.choice.identities
            teeth = [self._with_teeth(f, i, identities) for f, i in zip(faces, recipe.prepared, strict=True)]
            recipe = replace(recipe, prepared=teeth)
        strength = recipe.strength
        capped = capped and self._capping(strength, finish=True)
        remade = colour or brows or capped or corners
        if not remade and not any(i.narrowed.get(strength, True) for i in recipe.prepared):
            return chosen  # no eye of the chosen rung is narrower than the floor: the finish changes nothing
        made = [
            self._synthesize(face, ingredients, common.tris, preserve, strength, recipe.repel, finish=True)
            for face, ingredients in zip(faces, recipe.prepared, strict=True)
        ]
        checks = [
            self._distinct(
                crop, target, face, common.donor_descs, chosen.reference, self._others(faces, face)
            )
            for (crop, target), face in zip(made, faces, strict=True)
        ]
        score = self._judge(checks, common)[1]
        if not _no_worse(chosen.score, score):
            log.info("surrogate colour finish dropped: the finished group scored lower in the self-check")
            return chosen
        outs = tuple(c.out for c in checks if c.out is not None)
        return replace(chosen, crops=[c for c, _ in made], outs=outs)

    def _would_verify(
        self, faces: Sequence[AlignedFace], attempt: _Attempt, settings: VerifySettings = _VERIFY
    ) -> bool:
        """Whether the gateway's verification (``verify_face`` with ``settings``, by default the gateway's,
        the population being the attempt's reference) passes every crop of ``attempt`` against its own
        original crop: the same HOG re-detection and tests as on the pasted photo, where the self-check
        re-fits landmarks in the target's box (settings.verified_pick)."""
        originals = [f.descriptor for f in faces]
        for n, (face, crop) in enumerate(zip(faces, attempt.crops, strict=True)):
            if face.descriptor is None:
                continue  # no descriptor: the self-check could not judge it either
            others = [d for m, d in enumerate(originals) if m != n and d is not None]
            check = verify_face(
                face.image,
                crop,
                face.landmarks,
                settings,
                original_descriptor=face.descriptor,
                reference=attempt.reference,
                group_originals=others,
            )
            if not check.passed:
                return False
        return True

    def _off_centre(self, checks: Sequence[_Check], sex: str) -> bool:
        """Whether every output lies at least ``self_check_centre_distance`` from the bank's mean descriptor
        of the patient's sex (of every photo when the sex is unknown): off the point donor mixes crowd at."""
        limit = self.settings.self_check_centre_distance
        if limit <= 0:
            return True
        if sex not in self._centres:
            chosen = [p.descriptor for p in self.bank.photos if p.sex == sex] or [
                p.descriptor for p in self.bank.photos
            ]
            self._centres[sex] = np.mean(chosen, axis=0)
        centre = self._centres[sex]
        return all(c.out is None or distance(c.out, centre) >= limit for c in checks)

    def _read_sex(self, desc: np.ndarray, checking: bool = True) -> str:
        """The engine's sex reading (settings.sex_reader); ``checking``: with the self-check's margin.
        "both" (the self-check only): the centroids' reading when the probe agrees, else "?" (no patient's
        sex); the patient's own estimate stays the centroids'."""
        centroid_margin = self.settings.self_check_sex_margin if checking else 0.0
        if self.settings.sex_reader == "both":
            centroids = apparent_sex(desc, self.bank, centroid_margin)
            probe = self._probe_sex(desc, self.settings.sex_probe_margin) if checking else ""
            return centroids if not probe or probe == centroids else "?"
        if self.settings.sex_reader == "probe":
            return self._probe_sex(desc, self.settings.sex_probe_margin if checking else 0.0)
        return apparent_sex(desc, self.bank, centroid_margin)

    def _probe_keeps_sex(self, checks: Sequence[_Check], sex: str) -> bool:
        """Whether the bank's probe reads every output as ``sex`` (unknown sex or no probe: not held)."""
        calls = [self._probe_sex(c.out, 0.0) for c in checks if c.out is not None]
        return all(not call or not sex or call == sex for call in calls)

    def _probe_sex(self, desc: np.ndarray, margin: float) -> str:
        """The bank-fitted probe's reading ("" when the bank has no probe)."""
        if self._sex_probe is None:
            self._sex_probe = SexProbe.fit(self.bank.photos)
        return self._sex_probe.call(desc, margin) if self._sex_probe is not None else ""

    def _profile_sex_reader(self) -> Callable[[np.ndarray], str] | None:
        """The patient's sex estimate for _patient_profile (None: the donors' centroids, its default):
        the probe's when it reads the self-check's sex or ``settings.sex_estimate`` names it."""
        if self.settings.sex_reader != "probe" and self.settings.sex_estimate != "probe":
            return None
        return lambda desc: self._probe_sex(desc, 0.0)

    def _one_person(self, checks: Sequence[_Check]) -> bool:
        """Whether the group's outputs look like one person (every two within the pair distance)."""
        limit = self.settings.self_check_pair_distance
        outs = [c.out for c in checks if c.out is not None]
        return limit <= 0 or all(distance(a, b) <= limit for n, a in enumerate(outs) for b in outs[n + 1 :])

    def _others(self, faces: Sequence[AlignedFace], face: AlignedFace) -> list[np.ndarray]:
        """The descriptors of the group's other originals an output must not match (verification's
        ``group_originals``), when settings.self_check_group_photos; else none."""
        if not self.settings.self_check_group_photos:
            return []
        return [f.descriptor for f in faces if f is not face and f.descriptor is not None]

    def _descriptor(self, crop: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """The self-check's descriptor of an output: dlib's network run by torch (the same values within
        float rounding, ~1e-6; faces.descriptor_torch) or by dlib (settings.self_check_descriptor)."""
        if self.settings.self_check_descriptor == "torch":
            return torch_descriptor(crop, landmarks)
        return descriptor(crop, landmarks)

    def _distinct(
        self,
        crop: np.ndarray,
        target: np.ndarray,
        face: AlignedFace,
        donor_descs: np.ndarray,
        reference: list[np.ndarray],
        others: Sequence[np.ndarray] = (),
    ) -> _Check:
        """Group-level self-check of one synthetic face, as a checker sees it (landmarks re-fitted); its
        distance to the patient is the nearest of its own original and ``others`` (the group's other
        photos)."""
        if face.descriptor is None:
            return _Check(float("inf"), None, 0, 0)
        lo, hi = target.min(0), target.max(0)
        refit = landmarks_68(crop, np.array([lo[0], lo[1], hi[0], hi[1]], np.float64))
        out = self._descriptor(crop, refit)
        to_donors = np.linalg.norm(donor_descs - out[None], axis=1)
        nearest = int(to_donors.argmin())
        closer, usable = closer_than_input(
            out, face.descriptor, reference, SAME_IDENTITY, self.settings.self_check_rank_slack
        )
        donor = None
        if to_donors[nearest] <= self.settings.self_check_donor_distance:
            donor = self.bank.photos[nearest].identity
        sex = self._read_sex(out) if self.settings.self_check_sex else ""
        away = min([distance(out, face.descriptor)] + [distance(out, d) for d in others])
        return _Check(away, donor, closer, usable, out, sex, float(to_donors[nearest]))


FINISH_SLACK = 0.01  # dlib distance a finished group that did not pass may lose (colour moves it by ~0.005)


def _no_worse(chosen: tuple[float, ...], finished: tuple[float, ...]) -> bool:
    """Whether a finished group's self-check score is no worse than the chosen rung's: a rung that passed
    passes again; one that did not (verification decides those, fail-closed) is as likely to verify, keeps
    the sex and as many real faces nearer, and lies at most ``FINISH_SLACK`` nearer to the patient."""
    if chosen[0] >= 1:
        return finished[0] >= 1
    if any(f < c for f, c in zip(finished[1:-1], chosen[1:-1], strict=True)):
        return False
    return finished[-1] >= chosen[-1] - FINISH_SLACK


def stuck_on_donor(matched: Sequence[tuple[str | None, ...]], rungs: int) -> bool:
    """Whether each of the last ``rungs`` rungs (0 = never) matched the same donor(s), face by face."""
    recent = list(matched[-rungs:]) if rungs > 0 else []
    return len(recent) == rungs > 0 and any(d is not None for d in recent[0]) and len(set(recent)) == 1
