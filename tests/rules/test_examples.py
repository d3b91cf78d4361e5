"""The shipped examples route realistic photos as their comments promise, and rule sets cross processes."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from anonymizer.plans import PixelMode, Region, TextAction
from dicom_rules import RouteAction, load_rules
from tests.rules.conftest import photo_dataset

EXAMPLES = Path(__file__).resolve().parents[2] / "dicom_rules" / "examples"

CASES = [
    (
        "orthodontics.yaml",
        {"StudyDescription": "Orthodontic records"},
        "ORTHO_CAM1",
        "ortho-photos",
        (Region.MOUTH,),
    ),
    ("orthodontics.yaml", {"StudyDescription": "Dermatology"}, "ORTHO_CAM1", "catch-all", ()),
    ("rhinoplasty.yaml", {}, "FPS_CAMERA", "rhinoplasty-photos", (Region.NOSE,)),
    ("rhinoplasty.yaml", {"PatientAge": None, "PatientID": "TEST01"}, "FPS_CAMERA", "test-images", ()),
    ("ophthalmology.yaml", {}, "EYE_CAM", "external-eye-photos", (Region.EYES, Region.BROWS)),
    ("ophthalmology.yaml", {"Modality": "OP"}, "EYE_FUNDUS", "fundus-and-slit-lamp", ()),
    ("ophthalmology.yaml", {"Rows": 480}, "EYE_CAM", "catch-all", ()),
    ("dermatology.yaml", {"SeriesDescription": "Lesion close-up"}, "DERM_CAM", "lesion-close-ups", ()),
    ("dermatology.yaml", {"SeriesDescription": "Overview"}, "DERM_CAM", "overview-photos", ()),
]


@pytest.mark.parametrize(("file", "changes", "calling_ae", "route", "preserve"), CASES)
def test_examples_route_photos_as_documented(
    file: str, changes: dict[str, object], calling_ae: str, route: str, preserve: tuple[Region, ...]
) -> None:
    decision = load_rules(EXAMPLES / file).decide(photo_dataset(**changes), calling_ae, "10.20.30.4")
    assert decision.route_name == route
    if decision.action is RouteAction.FORWARD:
        assert decision.pixels.preserve == preserve
        assert decision.destination is not None and decision.destination.name == "research-orthanc"
    if route in ("fundus-and-slit-lamp", "lesion-close-ups"):
        assert decision.pixels.mode is PixelMode.PASSTHROUGH
    if file == "dermatology.yaml" and decision.action is RouteAction.FORWARD:
        assert decision.pixels.text.action is TextAction.REDACT
        assert decision.pixels.text.keep_regex == "^[0-9 .,]*(mm|cm)?$"


def test_example_tls_paths_resolve_next_to_the_rule_file() -> None:
    rules = load_rules(EXAMPLES / "orthodontics.yaml")
    tls = rules.destinations["research-orthanc"].tls  # type: ignore[union-attr]
    assert tls is not None and tls.ca_bundle == EXAMPLES / "tls" / "research-ca.pem"
    assert tls.require_peer_certificate


def test_rule_sets_and_decisions_pickle_for_worker_processes() -> None:
    rules = load_rules(EXAMPLES / "ophthalmology.yaml")
    copy = pickle.loads(pickle.dumps(rules))
    ds = photo_dataset()
    assert copy.decide(ds, "EYE_CAM") == rules.decide(ds, "EYE_CAM")
    assert copy.sha256 == rules.sha256
