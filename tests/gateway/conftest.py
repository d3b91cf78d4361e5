"""Gateway fixtures: configs with short quiet periods, in-process services, subprocess gateways, DCMTK sends.

- ``gateway_config(tmp_path, **overrides)``: a :class:`GatewayConfig` on free ports (quiet 0.3 s).
- ``rules_to(destination, mode)``: a one-route RuleSet forwarding to a destination with a pixel mode.
- fixture ``gateway``: factory starting an in-process :class:`Service` (stopped at teardown).
- ``GatewayProcess``: the gateway as a real subprocess (for kill -9), logs in ``<data>/gateway.log``.
- ``storescu(port, files, ...)``: DCMTK ``storescu -xy`` with TCP_NODELAY=1; returns the CompletedProcess.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from anonymizer.plans import MetadataPlan, PixelMode, PixelPlan
from dicom_rules import RouteAction, RouteDecision, RuleSet
from gateway.core.config import ForwardSettings, GatewayConfig
from gateway.core.ledger import Ledger, open_ledger
from gateway.core.service import Service
from tests.conftest import DCMTK_ENV, VL_PHOTO, GatewaySubprocess, free_port

REPO = Path(__file__).resolve().parents[2]


def gateway_config(data_dir: Path, **overrides: Any) -> GatewayConfig:
    forward = ForwardSettings(**overrides.pop("forward", {"backoff_initial_s": 0.2, "backoff_max_s": 1.0}))
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "port": free_port(),
        "metrics_port": free_port(),
        "quiet_period_s": 0.3,
        "max_wait_s": 30.0,
        "workers": 1,
        "poll_interval_s": 0.05,
        "forward": forward,
    }
    values.update(overrides)
    return GatewayConfig(**values)


def rules_to(destination: Any, mode: PixelMode = PixelMode.BLANK) -> RuleSet:
    decision = RouteDecision(
        route_name="test-route",
        action=RouteAction.FORWARD,
        destination=destination,
        pixels=PixelPlan(mode=mode),
        metadata=MetadataPlan(rule_set_name="test"),
    )
    return RuleSet(
        name="test", sha256="1" * 64, destinations={destination.name: destination}, catch_all=decision
    )


@pytest.fixture
def gateway() -> Iterator[Callable[..., Service]]:
    services: list[Service] = []

    def factory(config: GatewayConfig, **kwargs: Any) -> Service:
        service = Service(config, **kwargs).start()
        services.append(service)
        return service

    yield factory
    for service in services:
        service.stop()


def wait_until(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError("condition not reached")


@contextmanager
def ledger_of(config: GatewayConfig) -> Iterator[Ledger]:
    """The gateway's ledger, opened beside the running service (reads only), closed after."""
    ledger = open_ledger(config)
    try:
        yield ledger
    finally:
        ledger.close()


def instance_states(config: GatewayConfig) -> dict[str, int]:
    with ledger_of(config) as ledger:
        return {state: count.count for state, count in ledger.counts().instances.items()}


def storescu(
    port: int, files: Sequence[Path], aet: str = "HOSP_PACS", aec: str = "VERA_GW", timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    cmd = ["/usr/bin/storescu", "-xy", "-aet", aet, "-aec", aec, "127.0.0.1", str(port), *map(str, files)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=DCMTK_ENV)


LAUNCHER = textwrap.dedent(
    """
    import json, signal, sys, threading
    from pathlib import Path
    from dicom_rules import DicomDestination, FolderDestination
    from gateway.core.config import GatewayConfig
    from gateway.ops.logs import configure_logging
    from gateway.core.service import Service
    from anonymizer.plans import PixelMode
    from tests.gateway.conftest import rules_to

    def main() -> None:
        spec = json.loads(Path(sys.argv[1]).read_text())
        configure_logging()
        dest = spec["destination"]
        if "port" in dest:
            destination = DicomDestination(**dest)
        else:
            destination = FolderDestination(dest["name"], Path(dest["path"]))
        rules = rules_to(destination, PixelMode(spec["mode"]))
        service = Service(GatewayConfig.model_validate(spec["config"]), rules=rules)
        done = threading.Event()
        signal.signal(signal.SIGTERM, lambda *a: done.set())
        service.start()
        done.wait()
        service.stop()

    if __name__ == "__main__":  # the worker pool re-imports this file
        main()
    """
)


class GatewayProcess(GatewaySubprocess):
    """A real gateway process (same Service, own interpreter) that a test can kill -9 and restart."""

    def __init__(self, config: GatewayConfig, destination: dict[str, Any], mode: PixelMode = PixelMode.BLANK):
        self.config = config
        self.spec_path = config.data_dir / "launch.json"
        config.data_dir.mkdir(parents=True, exist_ok=True)
        spec = {"config": json.loads(config.model_dump_json()), "destination": destination, "mode": str(mode)}
        self.spec_path.write_text(json.dumps(spec))
        (config.data_dir / "launch.py").write_text(LAUNCHER)
        self.log_path = config.data_dir / "gateway.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, hold: str = "") -> GatewayProcess:
        env = {**os.environ, "PYTHONPATH": str(REPO), "VERA_GATEWAY_HOLD": hold}
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, str(self.config.data_dir / "launch.py"), str(self.spec_path)],
            stdout=log,
            stderr=log,
            env=env,
            cwd=REPO,
            start_new_session=True,
        )
        before = self.log_text().count('"service.started"')
        wait_until(
            lambda: self.log_text().count('"service.started"') > before or self.proc.poll() is not None, 60
        )
        assert self.proc.poll() is None, self.log_text()[-3000:]
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


class SplitRules(RuleSet):
    """Photos (VL Photographic) take ``photo``; everything else takes ``catch_all``. Picklable for workers."""

    photo: RouteDecision | None = None

    def decide(self, ds: Any, calling_ae: str = "", calling_ip: str = "") -> RouteDecision:
        if str(ds.get("SOPClassUID", "")) == VL_PHOTO and self.photo is not None:
            return self.photo
        assert self.catch_all is not None
        return self.catch_all


def split_rules(destination: Any, photo_mode: PixelMode, other_mode: PixelMode) -> SplitRules:
    """Photos → ``photo_mode`` (e.g. ANONYMIZE, the real face path), other objects → ``other_mode``."""

    def route(name: str, mode: PixelMode) -> RouteDecision:
        return RouteDecision(name, RouteAction.FORWARD, destination, PixelPlan(mode=mode), MetadataPlan())

    rules = SplitRules(
        name="split",
        sha256="2" * 64,
        destinations={destination.name: destination},
        catch_all=route("other", other_mode),
    )
    object.__setattr__(rules, "photo", route("photos", photo_mode))
    return rules


class SleepyRules(SplitRules):
    """Rules whose decision hangs (in the worker): simulates a stuck pixel engine for timeout tests."""

    def decide(self, ds: Any, calling_ae: str = "", calling_ip: str = "") -> RouteDecision:
        time.sleep(3600)
        raise AssertionError("unreachable")
