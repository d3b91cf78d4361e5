"""`vera-gateway doctor` reads tesseract's self-test line: a broken OCR install fails the doctor (and
every photo would be quarantined), a good one passes; routes that keep text need no OCR."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.ops.doctor import check_ocr, main

RULES = (
    "version: 1\nname: close-ups\ndestinations:\n  out: {folder: outbox}\n"
    "routes:\n  - name: close-ups\n    match: {Modality: XC}\n    pixels: {mode: passthrough, text: TEXT}\n"
    "    to: out\n  - name: rest\n    pixels: {mode: blank}\n    quarantine: not a close-up\n"
)


def _site(tmp_path: Path, text: str = "redact") -> Path:
    data = tmp_path / "data"
    data.mkdir()
    (data / "secret.key").write_text("ab" * 32 + "\n")
    (data / "secret.key").chmod(0o600)
    (tmp_path / "rules.yaml").write_text(RULES.replace("TEXT", text))
    config = tmp_path / "gateway.yaml"
    config.write_text(f"data_dir: {data}\nrules_file: {tmp_path / 'rules.yaml'}\n")
    return config


def _doctor(config: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, dict[str, str]]]:
    code = main(["--config", str(config), "--no-network", "--min-free-gb", "0", "--json"])
    rows = json.loads(capsys.readouterr().out)
    rows = rows["checks"] if isinstance(rows, dict) else rows
    return code, {r["name"]: r for r in rows}


def test_doctor_passes_with_tesseract_and_fails_when_its_models_are_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _site(tmp_path)
    code, rows = _doctor(config, capsys)
    assert code == 0, [r for r in rows.values() if r["status"] == "fail"]
    assert rows["text OCR"]["status"] == "ok" and "tesseract" in rows["text OCR"]["detail"]
    empty = tmp_path / "no-models"
    empty.mkdir()
    monkeypatch.setenv("TESSDATA_PREFIX", str(empty))
    code, rows = _doctor(config, capsys)
    assert code == 1
    assert rows["text OCR"]["status"] == "fail" and "apt-get install tesseract-ocr" in rows["text OCR"]["fix"]


def test_routes_that_keep_text_need_no_ocr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dicom_rules import load_rules

    _site(tmp_path, text="keep")
    monkeypatch.setenv("TESSDATA_PREFIX", str(tmp_path))
    assert list(check_ocr(load_rules(tmp_path / "rules.yaml"))) == []


def test_doctor_fails_when_the_text_filter_weights_are_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from anonymizer.text import filter as text_filter

    monkeypatch.setattr(text_filter, "WEIGHTS", tmp_path / "gone.safetensors")
    code, rows = _doctor(_site(tmp_path), capsys)
    assert code == 1
    assert rows["text OCR"]["status"] == "fail" and "filter" in rows["text OCR"]["detail"]
