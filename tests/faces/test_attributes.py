"""The DICOM header's PatientSex / PatientAge drive the surrogate's donor choice (the face only guesses)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset

from anonymizer.donors import load_bank
from anonymizer.engines.surrogate import SurrogateEngine, SurrogateSettings
from anonymizer.faces.attributes import PatientAttributes, age_years, from_header
from anonymizer.faces.pipeline import run_group
from anonymizer.plans import Region

SEED = 0x5EED_0002


@pytest.mark.parametrize(
    ("value", "years"),
    [("034Y", 34.0), ("006M", 0.5), ("052W", 52 * 7 / 365.25), ("", math.nan), ("34", math.nan)],
)
def test_dicom_age_strings_parse_to_years(value: str, years: float) -> None:
    got = age_years(value)
    assert (math.isnan(got) and math.isnan(years)) or got == pytest.approx(years)


def test_header_attributes_ignore_other_and_missing_values() -> None:
    ds = Dataset()
    ds.PatientSex, ds.PatientAge = "F", "041Y"
    assert from_header(ds) == PatientAttributes("F", 41.0)
    ds.PatientSex = "O"
    assert from_header(ds).sex == ""
    assert from_header(Dataset()).sex == "" and math.isnan(from_header(Dataset()).age)


@pytest.mark.parametrize("told", ["F", "M"])
def test_header_sex_decides_the_donors_sex(bank_path: Path, pair: list[np.ndarray], told: str) -> None:
    bank = load_bank(bank_path)
    sexes = {p.identity: p.sex for p in bank.photos}
    assert {"F", "M"} <= set(sexes.values())  # the test bank holds both, so the choice can follow the header
    # one donor set, one rung: what is asserted is the donors' sex, not how far the face is pushed
    engine = SurrogateEngine(SurrogateSettings(k=2, donor_sets=1, ladder=SurrogateSettings.ladder[:1]), bank)
    run_group(pair, engine, SEED, (Region.MOUTH,), attributes=[PatientAttributes(told, 30.0)] * 2)
    assert engine.last_choice is not None
    assert {sexes[i] for i in engine.last_choice.identities} == {told}
