"""`vera-gateway doctor`: exit 0 on a good setup; non-zero naming each problem on a broken one."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from anonymizer.engines.base import register
from anonymizer.plans import MetadataPlan, PixelPlan
from dicom_rules.decision import (
    DicomDestination,
    FolderDestination,
    RouteAction,
    RouteDecision,
    TlsSettings,
)
from dicom_rules.ruleset import RuleSet
from gateway.core.config import load_config
from gateway.core.ledger import open_ledger
from gateway.ops.doctor import (
    DoctorOptions,
    Status,
    check_engines,
    engine_defaults_of,
    failed,
    main,
    render,
    run_checks,
    sha256_of,
)
from tests.ops.peers import dcmtk_storescp, free_port
from tests.ops.pki import Pki, self_signed

ENGINE = "ops-doctor-bank"
FAST = DoctorOptions(min_free_bytes=0, probe_bytes=1 << 20, echo_timeout_s=3)


class _BankEngine:
    """A registered engine that, like the surrogate engine, cannot start without its donor bank."""

    name, crop_size = ENGINE, 64

    def __init__(self, options: dict[str, Any]) -> None:
        with np.load(options["donor_bank"]) as bank:
            self.templates = bank["templates"]

    def anonymize(self, faces: Any, identity_seed: int, preserve: Any) -> list[np.ndarray]:
        raise NotImplementedError


register(ENGINE)(_BankEngine)


def _rules(bank: Path, destinations: list[Any]) -> RuleSet:
    pixels = PixelPlan(engine=ENGINE, engine_options={"donor_bank": str(bank)})
    decision = RouteDecision("catch-all", RouteAction.FORWARD, destinations[0], pixels, MetadataPlan())
    dests = {d.name: d for d in destinations}
    return RuleSet(name="site", sha256="a" * 64, destinations=dests, catch_all=decision)


@pytest.fixture
def site(tmp_path: Path) -> dict[str, Any]:
    data = tmp_path / "data"
    data.mkdir()
    secret = data / "secret.key"
    secret.write_text("ab" * 32 + "\n")
    secret.chmod(0o600)
    bank = tmp_path / "donors.npz"
    np.savez(bank, templates=np.zeros((4, 68, 2), np.float32))
    return {"config": load_config(None, data_dir=data), "bank": bank, "secret": secret, "tmp": tmp_path}


def _names(checks: list[Any]) -> list[str]:
    return [c.name for c in failed(checks)]


@pytest.mark.integration
def test_doctor_passes_on_good_setup_with_reachable_destination(site: dict[str, Any]) -> None:
    port = free_port()
    dest = DicomDestination("research", "STORESCP", "127.0.0.1", port)
    folder = FolderDestination("copy", Path("outbox-copy"))
    with dcmtk_storescp(port, site["tmp"] / "pacs"):
        checks = run_checks(site["config"], _rules(site["bank"], [dest, folder]), FAST)
    assert failed(checks) == [], render(checks)
    by_name = {c.name: c for c in checks}
    assert "C-ECHO status 0x0000" in by_name["destination research"].detail
    engine = [c.detail for c in checks if c.name == f"engine {ENGINE} (catch-all)"]
    assert any(sha256_of(site["bank"])[:16] in d for d in engine) and any("loads" in d for d in engine)
    assert "all checks passed" in render(checks)


def test_doctor_names_missing_bank_open_secret_and_unreachable_destination(site: dict[str, Any]) -> None:
    site["bank"].unlink()
    site["secret"].chmod(0o644)
    dest = DicomDestination("research", "PACS", "127.0.0.1", free_port())  # nothing listens there
    checks = run_checks(site["config"], _rules(site["bank"], [dest]), FAST)
    assert sorted(_names(checks)) == sorted(
        [f"engine {ENGINE} (catch-all)", "secret", "destination research"]
    )
    text = render(checks)
    assert "chmod 600" in text and "donors build" in text and "did not answer" in text
    assert "3 problem(s)" in text


def test_doctor_flags_bank_whose_hash_differs_from_its_sidecar(site: dict[str, Any]) -> None:
    Path(str(site["bank"]) + ".sha256").write_text("0" * 64 + "  donors.npz\n")
    checks = run_checks(site["config"], _rules(site["bank"], [FolderDestination("f", Path("out"))]), FAST)
    assert _names(checks) == [f"engine {ENGINE} (catch-all)"]
    assert "sha256" in failed(checks)[0].detail


def test_doctor_fails_on_corrupt_ledger_and_missing_secret(site: dict[str, Any]) -> None:
    site["config"].ledger_path.write_bytes(b"this is not a database" * 100)
    site["secret"].unlink()
    checks = run_checks(site["config"], _rules(site["bank"], [FolderDestination("f", Path("out"))]), FAST)
    assert sorted(_names(checks)) == ["ledger", "secret"]


def test_doctor_accepts_healthy_ledger(site: dict[str, Any]) -> None:
    ledger = open_ledger(site["config"])
    ledger.quarantine_received("receive:test", None, "HOSP")
    ledger.close()
    checks = run_checks(site["config"], _rules(site["bank"], [FolderDestination("f", Path("out"))]), FAST)
    ledger = next(c for c in checks if c.name == "ledger")
    assert ledger.status == Status.OK and "integrity ok" in ledger.detail


@pytest.mark.integration
def test_doctor_echoes_tls_destination_with_its_certificates(site: dict[str, Any], pki: Pki) -> None:
    port = free_port()
    tls = TlsSettings(pki.client.certificate, pki.client.private_key, pki.ca, True)
    dest = DicomDestination("research", "STORESCP", "127.0.0.1", port, tls)
    server = ["+tls", str(pki.server.private_key), str(pki.server.certificate), "+cf", str(pki.ca), "-rc"]
    with dcmtk_storescp(port, site["tmp"] / "tls-pacs", server):
        good = run_checks(site["config"], _rules(site["bank"], [dest]), FAST)
        no_cert = dataclasses.replace(dest, tls=TlsSettings(None, None, pki.ca, True))
        bad = run_checks(site["config"], _rules(site["bank"], [no_cert]), FAST)
    assert failed(good) == [], render(good)
    assert _names(bad) == ["destination research"]
    assert "certificates" in failed(bad)[0].fix


def test_doctor_cli_exits_nonzero_on_default_rules_without_donor_bank(
    site: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    config = site["tmp"] / "gateway.yaml"
    config.write_text(f"data_dir: {site['config'].data_dir}\n")
    from gateway.cli import main as cli_main

    code = cli_main(["doctor", "--config", str(config), "--no-network", "--min-free-gb", "0"])
    out = capsys.readouterr().out
    assert code == 1
    assert "donors.npz is missing" in out and "engine surrogate" in out  # the config default bank
    assert main(["--config", str(config), "--no-network", "--min-free-gb", "0", "--json"]) == 1
    assert '"status": "fail"' in capsys.readouterr().out


def test_doctor_checks_surrogate_bank_from_environment(
    site: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VERA_DONOR_BANK", str(site["tmp"] / "missing-bank.npz"))
    pixels = PixelPlan(engine="surrogate")
    dest = FolderDestination("f", Path("out"))
    decision = RouteDecision("catch-all", RouteAction.FORWARD, dest, pixels, MetadataPlan())
    rules = RuleSet(name="env", sha256="b" * 64, destinations={"f": dest}, catch_all=decision)
    checks = run_checks(site["config"], rules, FAST)
    assert _names(checks) == ["engine surrogate (catch-all)"]
    assert "missing-bank.npz is missing" in failed(checks)[0].detail


@pytest.mark.integration
def test_doctor_cli_exits_zero_on_good_setup_from_config_and_rule_files(
    site: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    from gateway.cli import main as cli_main

    port, tmp = free_port(), site["tmp"]
    (tmp / "rules.yaml").write_text(
        "version: 1\nname: good-site\ndestinations:\n"
        f"  research: {{ae_title: STORESCP, host: 127.0.0.1, port: {port}}}\n"
        "routes:\n  - name: all\n"
        f"    pixels: {{engine: {ENGINE}, options: {{donor_bank: '{site['bank']}'}}}}\n"
        "    to: research\n"
    )
    config = tmp / "gateway.yaml"
    config.write_text(f"data_dir: {site['config'].data_dir}\nrules_file: {tmp / 'rules.yaml'}\n")
    with dcmtk_storescp(port, tmp / "pacs"):
        code = cli_main(["doctor", "--config", str(config), "--min-free-gb", "0"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "all checks passed" in out and "C-ECHO status 0x0000" in out


def _folder_rules(site: dict[str, Any]) -> RuleSet:
    return _rules(site["bank"], [FolderDestination("f", Path("out"))])


def test_doctor_checks_tls_listener_files_and_certificate_expiry(site: dict[str, Any], pki: Pki) -> None:
    from gateway.ops.tls import TlsListenerConfig

    listener = TlsListenerConfig(
        certificate=pki.server.certificate, private_key=pki.server.private_key, ca_bundle=pki.ca
    )
    config = site["config"].model_copy(update={"tls": listener})
    checks = run_checks(config, _folder_rules(site), FAST)
    tls = next(c for c in checks if c.name == "tls listener")
    assert (
        failed(checks) == [] and tls.status == Status.WARN and "expires in" in tls.detail
    )  # 2-day test cert

    expired = self_signed(site["tmp"], "expired-gateway", valid_days=-3)
    listener = listener.model_copy(
        update={"certificate": expired.certificate, "private_key": expired.private_key}
    )
    checks = run_checks(site["config"].model_copy(update={"tls": listener}), _folder_rules(site), FAST)
    assert _names(checks) == ["tls listener"] and "expired" in failed(checks)[0].detail

    same_port = site["config"].model_copy(update={"tls": listener.model_copy(update={"port": 11112})})
    assert "both listeners" in failed(run_checks(same_port, _folder_rules(site), FAST))[0].detail

    wrong_key = listener.model_copy(update={"certificate": pki.server.certificate})
    checks = run_checks(site["config"].model_copy(update={"tls": wrong_key}), _folder_rules(site), FAST)
    assert _names(checks) == ["tls listener"] and "do not load together" in failed(checks)[0].detail


def test_doctor_warns_about_an_open_allow_list_off_loopback(site: dict[str, Any]) -> None:
    exposed = site["config"].model_copy(update={"bind": "0.0.0.0"})
    allow = next(c for c in run_checks(exposed, _folder_rules(site), FAST) if c.name == "allow-list")
    assert allow.status == Status.WARN and "sources" in allow.fix
    local = next(c for c in run_checks(site["config"], _folder_rules(site), FAST) if c.name == "allow-list")
    assert local.status == Status.OK


def test_doctor_package_check_reports_what_it_checked() -> None:
    from gateway.ops.doctor import check_packages, check_python, check_torch

    (installed,) = check_packages()
    assert installed.status == Status.OK and "torch 2.14.1" in installed.detail
    (missing,) = check_packages("no-such-distribution-vera")
    assert missing.status == Status.FAIL and "make setup" in missing.fix
    assert next(check_python()).status == Status.OK
    assert all(c.status in (Status.OK, Status.WARN) for c in check_torch())


def test_doctor_uses_the_configured_donor_bank_when_rules_name_none(site: dict[str, Any]) -> None:
    config = site["config"].model_copy(update={"donor_bank": site["tmp"] / "no-bank-here.npz"})
    pixels = PixelPlan(engine="surrogate")
    dest = FolderDestination("f", Path("out"))
    decision = RouteDecision("catch-all", RouteAction.FORWARD, dest, pixels, MetadataPlan())
    rules = RuleSet(name="cfg", sha256="c" * 64, destinations={"f": dest}, catch_all=decision)
    checks = run_checks(config, rules, FAST)
    assert _names(checks) == ["engine surrogate (catch-all)"]
    assert "no-bank-here.npz is missing" in failed(checks)[0].detail


def test_doctor_finds_the_default_donor_bank_under_a_relative_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `make run` uses `--data-dir var`: the bank is var/donors.npz, not var/var/donors.npz
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VERA_DONOR_BANK", raising=False)
    Path("var").mkdir()
    np.savez("var/donors.npz", templates=np.zeros((4, 68, 2), np.float32))
    config = load_config(None, data_dir=Path("var"))
    pixels = PixelPlan(engine="surrogate")
    dest = FolderDestination("f", Path("out"))
    decision = RouteDecision("catch-all", RouteAction.FORWARD, dest, pixels, MetadataPlan())
    rules = RuleSet(name="rel", sha256="d" * 64, destinations={"f": dest}, catch_all=decision)
    bank_check = next(check_engines(rules, config.resolve, engine_defaults_of(config)))
    assert bank_check.status == Status.OK, bank_check.detail
    assert str(tmp_path / "var" / "donors.npz") in bank_check.detail


@pytest.mark.integration
def test_doctor_loads_the_real_surrogate_engine_with_a_real_donor_bank(
    site: dict[str, Any], donor_bank: Path
) -> None:
    config = site["config"].model_copy(update={"donor_bank": donor_bank})
    checks = run_checks(config, None, FAST)  # the shipped default rules: surrogate engine, bank from config
    engine = [c for c in checks if c.name.startswith("engine surrogate")]
    assert failed(checks) == [], render(checks)
    assert any("sha256" in c.detail for c in engine) and any("'surrogate' loads" in c.detail for c in engine)
