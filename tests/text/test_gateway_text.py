"""End to end: photos with name cards go DCMTK storescu → gateway (the shipped rule language, text: redact)
→ Orthanc; what arrives has its face replaced, its cards filled and BurnedInAnnotation NO, and no canary
token is readable by an OCR attacker who knows where each card was."""

from __future__ import annotations

import io
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pydicom import dcmread

from anonymizer import codec
from anonymizer.evaluation.canary_text import Canary, readable_tokens
from tests.conftest import FACES, TEST_FACE_IDS, Patient, Study, make_vl_photo, write_study
from tests.gateway.conftest import (
    gateway,  # noqa: F401 — the service fixture
    gateway_config,
    storescu,
    wait_until,
)
from tests.gateway.test_e2e import settled
from tests.text.conftest import card_photo, name_card

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("tessdata_ok")]

RULES = """
version: 1
name: text-e2e
destinations:
  research: {{ae_title: RESEARCH, host: 127.0.0.1, port: {port}}}
routes:
  - name: close-ups
    match: {{SeriesDescription: {{regex: '(?i)close'}}}}
    pixels: {{mode: passthrough, text: redact, keep_text: {{regex: '^[0-9 .,]*(mm|cm)?$'}}}}
    to: research
  - name: faces
    pixels: {{engine: surrogate, preserve: [mouth], text: redact}}
    to: research
"""


def _jpeg(rgb: np.ndarray, path: Path) -> Path:
    Image.fromarray(rgb).save(path, "JPEG", quality=95)
    return path


def _file(orthanc: Any, orthanc_id: str) -> Any:
    url = f"http://127.0.0.1:{orthanc.http_port}/instances/{orthanc_id}/file"
    with urllib.request.urlopen(url, timeout=30) as resp:
        return dcmread(io.BytesIO(resp.read()))


def test_cards_are_redacted_and_the_photos_reach_orthanc_unreadable(
    tmp_path: Path, gateway: Any, orthanc: Any, donor_bank: Path  # noqa: F811
) -> None:
    face_path = FACES / f"{TEST_FACE_IDS[0]}_03.jpg"
    if not face_path.is_file():
        pytest.skip("../shared/data/faces/london_set is not present")
    research = orthanc(aet="RESEARCH")
    face = np.asarray(Image.open(face_path).convert("RGB"))
    face_card, card = name_card(face, (1060, 1220), ("DOE, JANE", "MRN 00471155", "DOB 02.01.1980"), cap=30)
    close_up, close_canaries = card_photo(seed=3)
    canaries: dict[int, list[Canary]] = {face.shape[1]: [card], close_up.shape[1]: close_canaries}
    patient, study = Patient(), Study()
    photos = [make_vl_photo(_jpeg(face_card, tmp_path / "face.jpg"), patient, study, 1),
              make_vl_photo(_jpeg(close_up, tmp_path / "close.jpg"), patient, study, 2)]
    photos[1].SeriesDescription = "Lesion close-up"
    for ds in photos:
        rgb = codec.decode(ds)[0]
        assert sum(len(readable_tokens(rgb, c)) for c in canaries[rgb.shape[1]]) >= 3  # readable as sent
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES.format(port=research.dicom_port))
    config = gateway_config(tmp_path / "gw", donor_bank=donor_bank, rules_file=rules)
    service = gateway(config)
    files = write_study(tmp_path / "in", photos)
    assert storescu(service.port, files).returncode == 0
    counts = wait_until(lambda: settled(config, len(files)), timeout=180)
    assert counts == {"forwarded": 2}, counts
    ids = research.wait_for_instances(2)
    for orthanc_id in ids:
        ds = _file(research, orthanc_id)
        rgb = codec.decode(ds)[0]
        mine = canaries[rgb.shape[1]]
        assert [readable_tokens(rgb, c) for c in mine] == [set()] * len(mine)
        assert ds.BurnedInAnnotation == "NO" and ds.PatientName != patient.name
        assert any(v.startswith("text redact: checked") for v in ds.DeidentificationMethod)
