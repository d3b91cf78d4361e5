"""rules explain: names the matched route and why, and shows an attribute's before → after."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from anonymizer.keys import KeyRing
from dicom_rules import load_rules
from dicom_rules.cli import main
from dicom_rules.explain import explain, render
from tests.rules.conftest import photo_dataset

RULES = """\
destinations: {out: {folder: out}}
routes:
  - name: derm
    match: {Modality: OP}
    to: out
  - name: ortho
    match:
      Modality: XC
      StudyDescription: {regex: '(?i)ortho'}
    pixels: {preserve: [mouth]}
    metadata:
      overrides: {StudyDescription: keep}
    to: out
  - {name: catch-all, quarantine: unmatched}
"""


def _rules(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    return path


def test_explain_names_route_conditions_and_before_after(tmp_path: Path) -> None:
    rules = load_rules(_rules(tmp_path))
    keys = KeyRing(b"k" * 32)
    expl = explain(photo_dataset(), rules, calling_ae="CAM", keys=keys)
    assert expl.decision.route_name == "ortho"
    assert [(t.name, t.matched, t.reached) for t in expl.traces] == [
        ("derm", False, True),
        ("ortho", True, True),
        ("catch-all", False, False),
    ]
    derm, ortho = expl.traces[0].results, expl.traces[1].results
    assert (derm[0].passed, derm[0].actual) == (False, "XC")
    assert all(r.passed for r in ortho)
    name = expl.change("PatientName")
    assert name.before == "Doe^Jane" and name.after == keys.patient_pseudonym("MRN-0042")
    assert name.action.startswith("replaced")
    assert expl.change("StudyDescription").action == "kept [override: keep]"
    nested = [c for c in expl.changes if c.path.startswith("(0054,0220)[0].")]  # inside ViewCodeSequence
    assert {c.keyword for c in nested} >= {"CodeValue", "CodeMeaning"}
    out = io.StringIO()
    render(expl, Console(file=out, width=200, color_system=None), source="photo.dcm")
    text = out.getvalue()
    assert "route ortho → forward out" in text
    assert "Doe^Jane" in text and keys.patient_pseudonym("MRN-0042") in text
    assert "preserve" in text and "mouth" in text


def test_explain_shows_values_literally_never_as_markup(tmp_path: Path) -> None:
    ds = photo_dataset(PatientName="[bold]Doe[/bold]^Jane", StudyDescription="ortho [red]x[/red]")
    expl = explain(ds, load_rules(_rules(tmp_path)), keys=KeyRing(b"k" * 32))
    out = io.StringIO()
    render(expl, Console(file=out, width=250, color_system=None))
    text = out.getvalue()
    assert "[bold]Doe[/bold]^Jane" in text and "[override: keep]" in text
    assert "(?i)ortho" in text  # the regex of the route, shown as written


def test_explain_of_a_quarantined_file_says_so(tmp_path: Path) -> None:
    expl = explain(photo_dataset(Modality="SM"), load_rules(_rules(tmp_path)))
    assert expl.decision.route_name == "catch-all" and not expl.changes
    assert "quarantine: unmatched" in expl.note


def test_cli_check_and_explain(tmp_path: Path, capsys: object) -> None:
    rules = _rules(tmp_path)
    dcm = tmp_path / "photo.dcm"
    photo_dataset().save_as(dcm, enforce_file_format=True)
    assert main(["check", str(rules)]) == 0
    assert main(["explain", str(dcm), "--rules", str(rules)]) == 0
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    assert "OK rules" in out and "MATCH" in out and "Doe^Jane" in out
    broken = tmp_path / "broken.yaml"
    broken.write_text("routes:\n  - {name: a, to: nowhere}\n")
    assert main(["check", str(broken)]) == 1
    assert main(["check", "--strict", str(rules)]) == 1  # warning: no sources
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    assert f"{broken.resolve()}:2:19: error: destination 'nowhere' is not defined\n" in out


def test_explain_a_real_photo_with_the_orthodontics_example(tmp_path: Path, capsys: object) -> None:
    from tests.conftest import face_photos, make_vl_photo

    dcm = tmp_path / "ortho.dcm"
    make_vl_photo(face_photos(1)[0]).save_as(dcm, enforce_file_format=True)
    rules = Path(__file__).resolve().parents[2] / "dicom_rules" / "examples" / "orthodontics.yaml"
    assert main(["explain", str(dcm), "--rules", str(rules), "--calling-ae", "ORTHO_CAM1"]) == 0
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    assert "route ortho-photos → forward research-orthanc" in out
    assert "Doe^Jane^Q" in out  # before value, on the admin's terminal only
    assert "preserve" in out and "mouth" in out and "vera" in out


def test_vera_gateway_cli_has_the_rules_commands(capsys: pytest.CaptureFixture[str]) -> None:
    from gateway.cli import main as gateway_main

    default = Path(__file__).resolve().parents[2] / "dicom_rules" / "default.yaml"
    assert gateway_main(["rules", "check", str(default)]) == 0
    assert gateway_main(["rules", "schema"]) == 0
    out = capsys.readouterr().out
    assert "OK default" in out and '"title": "VerA Gateway rules"' in out
