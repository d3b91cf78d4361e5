"""Pipeline scheduling: a hung worker is stopped after job_timeout_s and the job retried, then quarantined."""

from __future__ import annotations

import multiprocessing
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from anonymizer.plans import PixelMode
from dicom_rules import FolderDestination
from gateway.core.ledger import InstanceState
from tests.conftest import Patient, Study, make_small_sc, write_study
from tests.gateway.conftest import (
    SleepyRules,
    SplitRules,
    gateway_config,
    instance_states,
    ledger_of,
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
        with ledger_of(config) as ledger:
            jobs = ledger.jobs()
        return bool(jobs) and jobs[0].reason == "worker-error:BrokenProcessPool"

    wait_until(retried, timeout=60)
    assert instance_states(config) in ({"grouped": 1}, {"processing": 1})


class CrashRules(SplitRules):
    """Kills its pool worker (like a segfaulting decoder) on instances with Modality XX."""

    def decide(self, ds: Any, calling_ae: str = "", calling_ip: str = "") -> Any:
        if ds.get("Modality") == "XX" and multiprocessing.parent_process() is not None:
            os.kill(os.getpid(), signal.SIGKILL)
        return super().decide(ds, calling_ae, calling_ip)


@pytest.mark.integration
def test_worker_crash_quarantines_only_the_job_that_causes_it(
    tmp_path: Path, gateway: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("gateway.core.scheduler.job_retry_delay", lambda attempts: 0.2)
    base = split_rules(FolderDestination("out", tmp_path / "out"), PixelMode.BLANK, PixelMode.BLANK)
    rules = CrashRules(
        name="crash", sha256="5" * 64, destinations=base.destinations, catch_all=base.catch_all
    )
    poison = make_small_sc(Patient(patient_id="P1"), Study())
    innocent = make_small_sc(Patient(patient_id="P2"), Study())
    poison.Modality = "XX"
    config = gateway_config(tmp_path / "gw")
    service = gateway(config, rules=rules)
    files = write_study(tmp_path / "in", [poison, innocent])  # one job each; both in the pool at the crash
    assert storescu(service.port, files).returncode == 0
    settled = ("forwarded", "quarantined")
    wait_until(lambda: sum(instance_states(config).get(s, 0) for s in settled) == 2, timeout=90)
    assert instance_states(config) == {"forwarded": 1, "quarantined": 1}  # both were quarantined before
    with ledger_of(config) as ledger:
        rows = ledger.instances(state=InstanceState.QUARANTINED)
    assert [r.reason for r in rows] == ["worker-error:BrokenProcessPool"]
    assert len(list((tmp_path / "out").glob("*.dcm"))) == 1
