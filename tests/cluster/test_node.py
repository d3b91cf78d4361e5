"""Cluster nodes follow an edited rule file without a restart (each node watches its own copy)."""

from __future__ import annotations

import os
from pathlib import Path

from gateway.cluster.node import rules_source
from gateway.core.config import GatewayConfig
from tests.cluster.nodes import RULES, wait_until


def test_rules_source_hot_reloads_an_edited_rule_file(tmp_path: Path) -> None:
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(RULES.format(aet="PACS_A", port=104))
    rules = rules_source(GatewayConfig(data_dir=tmp_path, rules_file=rules_file))
    assert rules().destinations["pacs"].ae_title == "PACS_A"
    rules_file.write_text(RULES.format(aet="PACS_B", port=104))
    os.utime(rules_file, (rules_file.stat().st_atime, rules_file.stat().st_mtime + 5))
    wait_until(lambda: rules().destinations["pacs"].ae_title == "PACS_B", 5)  # polled at most once a second
