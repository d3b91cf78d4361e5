"""`vera-gateway serve`'s flags over the config file: a path typed on the command line is relative to the
working directory, as in every other command; in the config file it is relative to the data dir."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.cli.app import build_parser, serve_config
from gateway.core.config import load_rule_set

RULES = "version: 1\nname: site\ndestinations: {out: {folder: out}}\nroutes: [{name: all, to: out}]\n"


def _config_of(argv: list[str], rules_at: str, monkeypatch: pytest.MonkeyPatch, cwd: Path) -> Any:
    monkeypatch.chdir(cwd)
    Path(rules_at).parent.mkdir(parents=True, exist_ok=True)
    Path(rules_at).write_text(RULES)
    return serve_config(build_parser("serve").parse_args(["serve", *argv]))


def test_serve_rules_flag_is_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = ["--data-dir", "var", "--rules", "site/rules.yaml"]
    config = _config_of(argv, "site/rules.yaml", monkeypatch, tmp_path)
    assert config.resolve(config.rules_file) == tmp_path / "site" / "rules.yaml"
    assert load_rule_set(config).name == "site"


def test_serve_rules_file_key_stays_relative_to_the_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "gateway.yaml").write_text("rules_file: rules.yaml\n")
    argv = ["--config", "gateway.yaml", "--data-dir", "var"]
    config = _config_of(argv, "var/rules.yaml", monkeypatch, tmp_path)
    assert config.resolve(config.rules_file) == Path("var/rules.yaml")
    assert load_rule_set(config).name == "site"
