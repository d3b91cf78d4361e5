"""First match wins; each operator; calling AE; sources fail closed; plans built from the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from anonymizer.plans import (
    MetadataPlan,
    PairingScope,
    PixelMode,
    ProfileOption,
    Region,
    TagAction,
    TagOverride,
)
from dicom_rules import RouteAction, RuleSet, Source, load_rules
from tests.rules.conftest import photo_dataset

RULES = """\
sources:
  - {ae_title: CAM1, networks: [10.1.0.0/16]}
  - {ae_title: CAM2}
destinations:
  pacs: {ae_title: RESEARCH, host: pacs.example.org, port: 11112}
  out: {folder: outbox}
routes:
  - name: by-ae
    match: {calling_ae: CAM2}
    drop: camera two is a test rig
  - name: first-ortho
    match: {StudyDescription: {regex: '(?i)ortho'}}
    pixels: {engine: vera, preserve: [mouth], pairing: study, options: {checkpoint: ck/vera.safetensors}}
    metadata:
      options: [retain_patient_characteristics]
      overrides: {PatientAge: keep, '(0008,0080)': {replace: RESEARCH SITE}, AccessionNumber: hash}
    to: pacs
  - name: second-ortho
    match: {StudyDescription: {regex: 'ortho'}}
    to: out
  - name: catch-all
    quarantine: nothing matched
"""


@pytest.fixture
def rules(tmp_path: Path) -> RuleSet:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    return load_rules(path, default_engine="blur")


def test_first_match_wins_and_builds_the_plans(rules: RuleSet, tmp_path: Path) -> None:
    decision = rules.decide(photo_dataset(StudyDescription="ortho T1"), "CAM1", "10.1.2.3")
    assert decision.route_name == "first-ortho"
    assert decision.action is RouteAction.FORWARD
    assert decision.destination is not None and decision.destination.name == "pacs"
    assert decision.pixels.engine == "vera" and decision.pixels.preserve == (Region.MOUTH,)
    assert decision.pixels.pairing is PairingScope.STUDY
    assert decision.pixels.engine_options["checkpoint"] == str(tmp_path / "ck/vera.safetensors")
    assert decision.metadata.options == frozenset({ProfileOption.RETAIN_PATIENT_CHARACTERISTICS})
    actions = {o.tag: (o.action, o.value) for o in decision.metadata.overrides}
    assert actions == {
        0x00101010: (TagAction.KEEP, None),
        0x00080080: (TagAction.REPLACE, "RESEARCH SITE"),
        0x00080050: (TagAction.HASH, None),
    }
    assert decision.metadata.rule_set_name == "rules" and decision.metadata.rule_set_hash == rules.sha256


def test_calling_ae_route_comes_first_and_catch_all_takes_the_rest(rules: RuleSet) -> None:
    assert rules.decide(photo_dataset(StudyDescription="Ortho"), "CAM2", "").action is RouteAction.DROP
    other = rules.decide(photo_dataset(StudyDescription="Derm"), "CAM1", "10.1.0.9")
    assert (other.route_name, other.action, other.reason) == (
        "catch-all",
        RouteAction.QUARANTINE,
        "nothing matched",
    )
    assert other.pixels.engine == "blur"  # no engine in the route: the gateway's configured default


def test_sources_admit_listed_ae_titles_from_their_networks(rules: RuleSet) -> None:
    assert rules.source_allowed("CAM1", "10.1.200.1")
    assert rules.source_allowed("CAM1", "::ffff:10.1.0.7")  # IPv4-mapped, as the gateway policy does
    assert not rules.source_allowed("CAM1", "192.168.0.1")
    assert not rules.source_allowed("CAM9", "10.1.0.1")
    assert rules.source_allowed("CAM2", "203.0.113.9")  # no networks: any address
    assert Source("*", ("10.9.0.0/16",)).allows("ANYONE", "10.9.1.1")


OPERATOR_CASES = [
    ("Modality: XC", {}, True),
    ("Modality: XC", {"Modality": "OP"}, False),
    ("Modality: [OP, XC]", {}, True),
    ("Modality: {one_of: [OP, OT]}", {}, False),
    ("(0008,0060): XC", {}, True),
    ("00080060: {equals: XC}", {}, True),
    ("ImageType: PRIMARY", {}, True),  # any value of a multi-valued attribute
    ("ImageType: 'ORIGINAL\\PRIMARY'", {}, True),  # or the whole value
    ("StudyDescription: {regex: '^Ortho records T\\d$'}", {}, True),
    ("StudyDescription: {regex: '^records'}", {}, False),
    ("PatientAge: {present: true}", {}, True),
    ("PatientAge: {present: true}", {"PatientAge": None}, False),
    ("PatientAge: {absent: true}", {"PatientAge": None}, True),
    ("PatientAge: {present: false}", {}, False),
    ("Rows: {gt: 2999}", {}, True),
    ("Rows: {gt: 3000}", {}, False),
    ("Rows: {ge: 3000, lt: 3001}", {}, True),
    ("Rows: {le: 100}", {}, False),
    ("Rows: 3000", {}, True),  # a number compares numerically
    ("Rows: {gt: 10}", {"Rows": None}, False),
    ("Modality: XC\n      Rows: {lt: 10}", {}, False),  # all conditions must hold
    ("ViewCodeSequence.CodeMeaning: Lateral", {}, True),  # through sequence items
    ("ViewCodeSequence.CodeValue: {one_of: ['1', '399067008']}", {}, True),
    ("ViewCodeSequence.CodeMeaning: {regex: '^Front'}", {}, False),
    ("AnatomicRegionSequence.CodeMeaning: {present: true}", {}, False),
    ("ViewCodeSequence.CodeMeaning: {absent: true}", {}, False),
]


@pytest.mark.parametrize(("condition", "changes", "expected"), OPERATOR_CASES)
def test_each_operator(tmp_path: Path, condition: str, changes: dict[str, object], expected: bool) -> None:
    path = tmp_path / "op.yaml"
    path.write_text(
        "routes:\n"
        "  - name: hit\n"
        f"    match:\n      {condition}\n"
        "    drop: hit\n"
        "  - {name: miss, quarantine: miss}\n"
    )
    decision = load_rules(path).decide(photo_dataset(**changes), "CAM", "10.0.0.1")
    assert (decision.route_name == "hit") is expected


def test_default_rules_load_the_shipped_file() -> None:
    from dicom_rules import default_rules

    rules = default_rules()
    decision = rules.decide(photo_dataset(), "ANY", "127.0.0.1")
    assert decision.route_name == "catch-all" and decision.action is RouteAction.FORWARD
    assert decision.destination is not None and decision.destination.name == "outbox-research"
    assert str(decision.destination.path) == "outbox-research"  # type: ignore[union-attr]
    assert decision.pixels.preserve == () and decision.pixels.mode is PixelMode.ANONYMIZE
    assert decision.metadata.options == frozenset(
        {ProfileOption.RETAIN_LONGITUDINAL_MODIFIED_DATES, ProfileOption.CLEAN_DESCRIPTORS}
    )
    assert default_rules("vera").catch_all is not None
    assert default_rules("vera").catch_all.pixels.engine == "vera"  # type: ignore[union-attr]


def test_every_metadata_key_reaches_the_plan(tmp_path: Path) -> None:
    path = tmp_path / "meta.yaml"
    path.write_text(
        "routes:\n"
        "  - name: all\n"
        "    metadata:\n"
        "      options: [retain_safe_private, retain_uids]\n"
        "      strict: true\n"
        "      strict_keep: [PatientSex, '(0008,0070)']\n"
        "      shift_time: true\n"
        "      allow_burned_in_annotation: true\n"
        "      safe_private: ['0009,\"ACME 1.0\",10']\n"
        "      clean_vocabulary: [LEFT, RIGHT]\n"
        "      date_offset_min_days: -100\n"
        "      date_offset_max_days: -10\n"
        "      jpeg_full_scan: true\n"
        "      overrides: {StudyDate: shift-date}\n"
        "    quarantine: review\n"
    )
    rules = load_rules(path)
    assert rules.catch_all is not None
    assert rules.catch_all.metadata == MetadataPlan(
        options=frozenset({ProfileOption.RETAIN_SAFE_PRIVATE, ProfileOption.RETAIN_UIDS}),
        strict=True,
        overrides=(TagOverride(0x00080020, TagAction.SHIFT_DATE),),
        safe_private=('0009,"ACME 1.0",10',),
        allow_burned_in_annotation=True,
        rule_set_name="meta",
        rule_set_hash=rules.sha256,
        shift_time=True,
        strict_keep=("PatientSex", "Manufacturer"),
        clean_vocabulary=("LEFT", "RIGHT"),
        date_offset_min_days=-100,
        date_offset_max_days=-10,
        jpeg_full_scan=True,
    )
