"""Pipeline scheduling: a hung worker is stopped after job_timeout_s and the job retried, then quarantined."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from anonymizer.plans import PixelMode
from dicom_rules import FolderDestination
from gateway.ledger import Ledger
from tests.conftest import make_small_sc, write_study
from tests.gateway.conftest import (
    SleepyRules,
    gateway_config,
    instance_states,
    split_rules,
    storescu,
    wait_until,
)


@pytest.mark.integration
def test_hung_worker_is_stopped_and_job_retried(tmp_path: Path, gateway: Any) -> None:
    base = split_rules(FolderDestination("out", tmp_path / "out"), PixelMode.BLANK, PixelMode.BLANK)
    rules = SleepyRules(
        name="sleepy", sha256="3" * 64, destinations=base.destinations, catch_all=base.catch_all
    )
    config = gateway_config(tmp_path / "gw", job_timeout_s=1.0)
    service = gateway(config, rules=rules)
    assert storescu(service.port, write_study(tmp_path / "in", [make_small_sc()])).returncode == 0

    def retried() -> bool:
        jobs = Ledger(config.ledger_path).query("SELECT state, reason, attempts FROM jobs")
        return bool(jobs) and jobs[0]["reason"] == "worker-error:BrokenProcessPool"

    wait_until(retried, timeout=60)
    assert instance_states(config) in ({"grouped": 1}, {"processing": 1})
