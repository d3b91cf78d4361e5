"""Service config: YAML + CLI overrides into a frozen model; errors name the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.cli import main as cli_main
from gateway.core.config import ConfigError, load_config


def test_yaml_config_with_overrides_and_derived_paths(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(
        "ae_title: SITE_GW\nallowed_callers:\n  - {ae_title: HOSP, networks: [10.0.0.0/8]}\n"
        "forward: {give_up_s: 60}\nquiet_period_s: 5\n"
    )
    config = load_config(path, data_dir=tmp_path / "data", port=4242, workers=None)
    assert (config.ae_title, config.port, config.workers, config.quiet_period_s) == ("SITE_GW", 4242, 2, 5)
    assert config.allowed_callers[0].networks == ("10.0.0.0/8",) and config.forward.give_up_s == 60
    assert config.ledger_path == tmp_path / "data" / "ledger.sqlite3"
    assert config.secret_path == tmp_path / "data" / "secret.key"
    with pytest.raises(ValidationError):
        config.port = 1  # type: ignore[misc]


def test_invalid_config_names_file_and_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("port: 99999\nallowed_callers: [{ae_title: X, networks: [not-a-cidr]}]\nunknown_key: 1\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    text = str(err.value)
    assert str(path) in text and "port" in text and "allowed_callers" in text and "unknown_key" in text
    assert cli_main(["status", "--config", str(path)]) == 2
    assert "bad.yaml" in capsys.readouterr().err


def test_serve_with_a_broken_rule_file_prints_file_line_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("gateway.ops.logs.configure_logging", lambda level: None)  # keep pytest's handlers
    rules = tmp_path / "broken.yaml"
    rules.write_text("version: 1\nname: x\nroutes:\n  - name: a\n    bogus: 1\n")
    argv = ["--data-dir", str(tmp_path / "data"), "serve", "--rules", str(rules), "--port", "0"]
    assert cli_main([*argv, "--metrics-port", "0"]) == 2  # raised a traceback before
    assert f"{rules}:5:5: error: unknown key 'bogus'" in capsys.readouterr().err
