"""The service runs the rule file it is given and picks up a valid edit without a restart."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Study, make_small_sc, write_study
from tests.gateway.conftest import gateway_config, instance_states, storescu, wait_until

RULES = """
version: 1
name: reload-test
destinations:
  out:
    folder: {folder}
routes:
  - name: catch-all
    pixels: {{mode: blank}}
    metadata: {{profile: basic}}
    to: out
"""


@pytest.mark.integration
def test_rule_file_edit_applies_to_the_next_job(tmp_path: Path, gateway: Any) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES.format(folder="first"))
    config = gateway_config(tmp_path / "gw", rules_file=rules)  # pool: no in-process pixel state
    service = gateway(config)
    assert storescu(service.port, write_study(tmp_path / "a", [make_small_sc(study=Study())])).returncode == 0
    wait_until(lambda: instance_states(config) == {"forwarded": 1}, timeout=60)
    rules.write_text(RULES.format(folder="second"))
    os.utime(rules, (rules.stat().st_atime, rules.stat().st_mtime + 5))
    wait_until(lambda: service.rules().sha256 != "" and "second" in str(service.rules().destinations["out"]))
    assert storescu(service.port, write_study(tmp_path / "b", [make_small_sc(study=Study())])).returncode == 0
    wait_until(lambda: instance_states(config) == {"forwarded": 2}, timeout=60)
    assert len(list((config.data_dir / "first").glob("*.dcm"))) == 1
    assert len(list((config.data_dir / "second").glob("*.dcm"))) == 1
