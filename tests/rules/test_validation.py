"""A broken rule file yields every error at its exact file:line:column; shipped files validate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dicom_rules import RulesError, load_rules
from dicom_rules.cli import SCHEMA_PATH, schema_text

SHIPPED = sorted(Path(__file__).resolve().parents[2].joinpath("dicom_rules").rglob("*.yaml"))

BROKEN = """\
version: 1
name: broken
sources:
  - ae_title: CAM1
    networks: [10.0.0.1/8, not-a-net]
destinations:
  pacs:
    ae_title: PACS
    host: pacs
    port: 99999
routes:
  - name: first
    match:
      PatientNam: {equals: X}
      StudyDescription: {regex: '(unclosed'}
      PatientAge: {gt: 40}
    pixels:
      preserve: [mouth, chin]
      enginee: vera
    metadata:
      overrides:
        PatientAge: {replace: "40 years"}
        StudyDate: hash
        (0010,1010): keep
    to: pacz
  - name: catch
    to: pacs
  - name: late
    match: {Modality: XC}
    quarantine: never
    drop: twice
"""

EXPECTED = [
    (5, 16, "'10.0.0.1/8' is not a network address", "did you mean 10.0.0.0/8?"),
    (5, 28, "'not-a-net' is not a network address", ""),
    (10, 11, "port:", ""),
    (14, 7, "unknown DICOM keyword 'PatientNam'", "'PatientName'"),
    (15, 33, "invalid regular expression '(unclosed'", ""),
    (16, 19, "numeric comparison on PatientAge", ""),
    (18, 25, "preserve:", ""),
    (19, 7, "unknown key 'enginee'", "did you mean 'engine'?"),
    (22, 21, "'40 years' is not a valid AS value", "040Y"),
    (23, 20, "hash needs a text attribute", ""),
    (24, 9, "PatientAge (0010,1010) has two overrides", ""),
    (25, 9, "destination 'pacz' is not defined", "did you mean 'pacs'?"),
    (28, 5, "exactly one of to, quarantine or drop", ""),
    (28, 5, "route 'late' is unreachable", ""),
]


def _errors(path: Path) -> RulesError:
    with pytest.raises(RulesError) as info:
        load_rules(path)
    return info.value


def test_broken_file_reports_every_error_at_its_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN)
    errors = _errors(path).errors
    got = [(e.loc.line, e.loc.column) for e in errors]
    assert got == [(line, col) for line, col, _, _ in EXPECTED]
    for error, (_, _, message, hint) in zip(errors, EXPECTED, strict=True):
        assert error.loc.file == path.resolve()
        assert message in error.message
        assert hint in error.hint
        assert error.hint, f"no hint for: {error.message}"
    assert str(errors[0]).startswith(f"{path.resolve()}:5:16: error: ")


def test_yaml_syntax_error_reports_its_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("routes:\n  - name: a\n    to: [x\n  - name: b\n")
    (error,) = _errors(path).errors
    assert error.message.startswith("YAML syntax")
    assert error.loc.line == 4


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("routes: &r\n  - *r\n", 1),  # recursive alias (reported where the anchor is)
        ("name: 2020-13-45\nroutes: []\n", 1),  # YAML timestamp that is no date
        ("routes:\n  - <<: 1\n    name: x\n", 2),  # bad merge key
    ],
)
def test_hostile_yaml_is_an_error_not_a_crash(tmp_path: Path, text: str, line: int) -> None:
    path = tmp_path / "hostile.yaml"
    path.write_text(text)
    (error,) = _errors(path).errors
    assert error.message.startswith("YAML syntax") and error.loc.line == line


def test_duplicate_yaml_key_is_a_conflict(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text("routes:\n  - name: a\n    quarantine: x\n    quarantine: y\n")
    (error,) = _errors(path).errors
    assert (error.loc.line, error.loc.column, error.message) == (4, 5, "duplicate key 'quarantine'")
    assert "line 3" in error.hint


def test_missing_catch_all_and_missing_routes(tmp_path: Path) -> None:
    path = tmp_path / "nocatch.yaml"
    path.write_text(
        "destinations: {out: {folder: out}}\nroutes:\n  - name: a\n    match: {Modality: XC}\n    to: out\n"
    )
    (error,) = _errors(path).errors
    assert "no catch-all route" in error.message
    assert (error.loc.line, error.loc.column) == (2, 1)
    empty = tmp_path / "empty.yaml"
    empty.write_text("name: x\n")
    (missing,) = _errors(empty).errors
    assert missing.message == "missing required key 'routes'"


def test_conflicting_options_and_tls_pairs(tmp_path: Path) -> None:
    path = tmp_path / "conflict.yaml"
    path.write_text(
        "destinations:\n"
        "  pacs: {ae_title: P, host: h, port: 104, tls: {certificate: c.pem, ca_bundle: ca.pem}}\n"
        "routes:\n"
        "  - name: all\n"
        "    metadata:\n"
        "      options: [retain_longitudinal_full_dates, retain_longitudinal_modified_dates]\n"
        "    pixels: {mode: blank, preserve: [nose]}\n"
        "    to: pacs\n"
    )
    errors = _errors(path).errors
    assert [(e.loc.line, e.message.split(" ")[0]) for e in errors] == [
        (2, "certificate"),
        (6, "full"),
        (7, "preserve"),
    ]
    clash = tmp_path / "clash.yaml"
    clash.write_text(
        "routes:\n  - name: all\n    metadata:\n      strict: true\n      strict_keep: [StudyDescription]\n"
        "      overrides: {'(0008,1030)': empty}\n    drop: x\n"
    )
    (error,) = _errors(clash).errors
    assert error.loc.line == 4 and "strict_keep but an override changes it" in error.message


def test_keeping_a_direct_identifier_needs_an_explicit_allow(tmp_path: Path) -> None:
    text = (
        "destinations: {out: {folder: out}}\n"
        "routes:\n"
        "  - name: all\n"
        "    metadata:\n"
        "      overrides:\n"
        "        PatientName: keep\n"
        "        ViewCodeSequence: keep\n"
        "    match: {ViewCodeSequence: {equals: x}}\n"
        "    to: out\n"
        "  - {name: rest, drop: x}\n"
    )
    path = tmp_path / "keep.yaml"
    path.write_text(text)
    errors = _errors(path).errors
    assert [(e.loc.line, e.message.split(" ")[0]) for e in errors] == [(6, "keep"), (8, "ViewCodeSequence")]
    assert "hash" in errors[0].hint and "sequence" in errors[1].message
    allowed = text.replace("      overrides:", "      allow_identifiers: true\n      overrides:")
    path.write_text(allowed.replace("{equals: x}", "{present: true}"))
    decision = load_rules(path).routes[0].decision
    assert {o.tag for o in decision.metadata.overrides} == {0x00100010, 0x00540220}


def test_errors_in_an_included_file_name_that_file(tmp_path: Path) -> None:
    (tmp_path / "dest.yaml").write_text("destinations:\n  pacs:\n    ae_title: P\n    host: h\n    port: 0\n")
    main = tmp_path / "main.yaml"
    main.write_text("include: [dest.yaml]\nroutes:\n  - {name: all, to: pacs}\n")
    (error,) = _errors(main).errors
    assert (error.loc.file.name, error.loc.line, error.loc.column) == ("dest.yaml", 5, 11)


def test_include_merges_destinations_and_routes_in_order(tmp_path: Path) -> None:
    (tmp_path / "shared.yaml").write_text(
        "destinations: {pacs: {ae_title: P, host: h, port: 104}}\n"
        "routes:\n  - {name: shared-first, match: {Modality: OP}, drop: fundus}\n"
    )
    main = tmp_path / "main.yaml"
    main.write_text("include: shared.yaml\nroutes:\n  - {name: all, to: pacs}\n")
    rules = load_rules(main)
    assert [r.name for r in rules.routes] == ["shared-first", "all"]
    assert {f.name for f in rules.files} == {"main.yaml", "shared.yaml"}
    assert rules.destinations["pacs"].port == 104  # type: ignore[union-attr]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_rule_files_validate(path: Path) -> None:
    rules = load_rules(path)
    assert rules.routes and not rules.routes[-1].conditions
    assert len(rules.sha256) == 64


def test_shipped_files_cover_default_and_three_specialties() -> None:
    assert {p.name for p in SHIPPED} >= {
        "default.yaml",
        "orthodontics.yaml",
        "rhinoplasty.yaml",
        "ophthalmology.yaml",
    }


def test_schema_file_is_current() -> None:
    fix = f"run: python -m dicom_rules.cli schema > {SCHEMA_PATH}"
    assert SCHEMA_PATH.read_text() == schema_text(), fix
    schema = json.loads(schema_text())
    assert "routes" in schema["required"]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_files_pass_the_editor_schema(path: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    import yaml

    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))
    assert [e.message for e in validator.iter_errors(yaml.safe_load(path.read_text()))] == []
    broken = yaml.safe_load(path.read_text())
    broken["routes"][0]["pixelz"] = {}
    assert any("pixelz" in e.message for e in validator.iter_errors(broken))


def test_readme_example_validates(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[2] / "dicom_rules" / "README.md").read_text()
    example = readme.split("```yaml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "rules.yaml").write_text(example)
    (tmp_path / "shared-destinations.yaml").write_text("destinations: {}\n")
    rules = load_rules(tmp_path / "rules.yaml")
    assert [r.name for r in rules.routes] == ["ortho-photos", "catch-all"]
    assert len(rules.routes[0].decision.metadata.overrides) == 6


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("PatientName: {replace: 'A\\B'}", "takes 1 value(s); the replacement has 2"),
        ("PixelSpacing: {replace: '0.1'}", "takes 2 value(s); the replacement has 1"),
        ("StationName: {replace: THIS-NAME-IS-LONGER-THAN-16}", "not a valid SH value"),
        ("StudyDate: {replace: '20241341'}", "not a valid DA value"),
        ("StudyTime: shift-date", "shift-date needs a DA or DT attribute"),
        ("ViewCodeSequence: {replace: x}", "cannot be replaced with text"),
        ("'(0009,1001)': {replace: x}", "private tag"),
        ("PixelData: remove", "handled by the pixels plan"),
    ],
)
def test_override_values_must_fit_the_attribute(tmp_path: Path, override: str, message: str) -> None:
    path = tmp_path / "vr.yaml"
    path.write_text(
        f"routes:\n  - name: r\n    metadata:\n      overrides:\n        {override}\n    drop: x\n"
    )
    (error,) = _errors(path).errors
    assert message in error.message and error.hint
    assert error.loc.line == 5


def test_passthrough_catch_all_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "open.yaml"
    path.write_text(
        "destinations: {out: {folder: o}}\nroutes:\n  - name: all\n    pixels: {mode: passthrough}\n"
        "    to: out\n"
    )
    (error,) = _errors(path).errors
    assert "keep its face" in error.message and (error.loc.line, error.loc.column) == (4, 20)


def test_warnings_do_not_block_but_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "warn.yaml"
    path.write_text(
        "destinations:\n"
        "  out: {folder: o}\n"
        "  spare: {ae_title: S, host: h, port: 104, tls: {ca_bundle: missing-ca.pem}}\n"
        "routes:\n"
        "  - {name: all, to: out}\n"
    )
    warnings = load_rules(path).warnings
    assert any(
        w.startswith(f"{path.resolve()}:3:3: warning: destination 'spare' is not used") for w in warnings
    )
    assert any(":3:50: warning: ca_bundle file missing-ca.pem not found" in w for w in warnings)
    assert any("warning: no sources" in w for w in warnings)


def test_dotted_match_keys_must_go_through_sequences(tmp_path: Path) -> None:
    path = tmp_path / "dots.yaml"
    path.write_text(
        "routes:\n  - name: r\n    match:\n      Modality.CodeMeaning: x\n"
        "      ViewCodeSequence.CodeMeanin: y\n    drop: x\n  - {name: rest, drop: y}\n"
    )
    errors = _errors(path).errors
    assert [(e.loc.line, e.loc.column) for e in errors] == [(4, 7), (5, 7)]
    assert "Modality (0008,0060) is not a sequence" in errors[0].message
    assert "'CodeMeaning'" in errors[1].hint
