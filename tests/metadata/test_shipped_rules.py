"""Leak test for every shipped rule file: through each forwarding route's metadata plan, no canary survives
except in attributes that route explicitly keeps (a Retain option's K or a keep override) or, in standard
mode, unlisted short text."""

from __future__ import annotations

from pathlib import Path

import pytest

from anonymizer.keys import KeyRing
from anonymizer.metadata import deidentify
from anonymizer.metadata.compiled import Action, compile_plan
from anonymizer.metadata.values import UNLISTED_REMOVED_VRS
from anonymizer.plans import MetadataPlan
from tests.metadata.conftest import PhotoCase, saved

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "dicom_rules"
RULE_FILES = sorted([RULES / "default.yaml", *(RULES / "examples").glob("*.yaml")])


def _plans(path: Path) -> list[tuple[str, MetadataPlan]]:
    rules_module = pytest.importorskip("dicom_rules")
    rules = rules_module.load_rules(path)
    decisions = [route.decision for route in rules.routes]
    if rules.catch_all is not None:
        decisions.append(rules.catch_all)
    return [(d.route_name, d.metadata) for d in decisions if d.destination is not None]


def _kept_on_purpose(case: PhotoCase, plan: MetadataPlan) -> set[str]:
    cp = compile_plan(plan)
    kept = set()
    for elem in case.fresh():
        if elem.VR == "SQ" or elem.tag.is_private:
            continue
        entry = cp.actions.get(int(elem.tag))
        unlisted = entry is None and not plan.strict and elem.VR not in UNLISTED_REMOVED_VRS
        if unlisted or (entry is not None and entry[0] in (Action.KEEP, Action.RECURSE)):
            kept |= {c for c in case.canaries.made if c in str(elem.value)}
    return kept


@pytest.mark.parametrize("path", RULE_FILES, ids=[p.stem for p in RULE_FILES])
def test_no_canary_survives_any_shipped_route(path: Path, full_photo: PhotoCase, keys: KeyRing) -> None:
    plans = _plans(path)
    assert plans, "a shipped rule file forwards somewhere"
    for route, plan in plans:
        out = saved(deidentify(full_photo.fresh(), plan, keys, None))
        leaked = {c for c in full_photo.canaries.made if c.encode() in out}
        assert leaked <= _kept_on_purpose(full_photo, plan), route
