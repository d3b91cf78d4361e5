"""``sex_pass_probe`` (issue-11s11): a rung passes only when the bank's probe also reads every output as the
patient's sex. With the nose kept the self-check reads sex by the donors' centroids, and London-set 135's
passing rung kept her a woman by them (just) where the probe read her smiling output as a man."""

from __future__ import annotations

import numpy as np

from anonymizer.engines.surrogate import SurrogateEngine, SurrogateSettings, _Check
from anonymizer.engines.surrogate_ladder import _Common


def _judged(probe_call: str, on: bool, centroids: str = "F") -> tuple[bool, tuple[float, ...]]:
    """The engine's own judgement of one far output with many real faces nearer, read ``centroids`` by the
    self-check's reader and ``probe_call`` by the bank's probe; the patient is a woman."""
    engine = SurrogateEngine(SurrogateSettings(sex_reader="centroids", sex_pass_probe=on))
    engine._probe_sex = lambda desc, margin: probe_call  # type: ignore[method-assign]
    common = _Common(np.zeros((0, 3), int), np.zeros((0, 128)), [], [], ("F", 30.0))
    check = _Check(0.75, None, 10, 20, np.zeros(128), centroids)
    passed, score, _, _ = engine._judge([check], common)
    return passed, score


def test_a_rung_the_probe_reads_as_the_other_sex_does_not_pass() -> None:
    passed, score = _judged("M", on=True)
    assert not passed and score[0] == 0.0
    assert score[2] == 1.0  # the reader's "sex kept" place is untouched: the ranking of failures is as before


def test_it_passes_when_the_probe_agrees_or_has_no_reading() -> None:
    assert _judged("F", on=True)[0]
    assert _judged("", on=True)[0]


def test_off_the_reader_alone_decides() -> None:
    assert _judged("M", on=False)[0]  # off (the base): the centroids' reading passes it, as before
    assert not _judged("F", on=False, centroids="M")[0]  # the reader still fails its own misses
    assert not _judged("F", on=True, centroids="M")[0]  # on: the probe cannot pass what the reader fails
    assert SurrogateSettings().sex_pass_probe is False
    assert dict(SurrogateSettings().nose_kept).get("sex_pass_probe") is None
