"""Hot reload: a valid edit swaps atomically and logs its sha256; a broken edit keeps the old rules."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from dicom_rules import RouteAction, RulesError, RulesWatcher
from tests.rules.conftest import photo_dataset

V1 = "destinations: {out: {folder: out}}\nroutes:\n  - {name: v1, to: out}\n"
V2 = "destinations: {out: {folder: out}}\nroutes:\n  - {name: v2, drop: paused}\n"
BROKEN = "destinations: {out: {folder: out}}\nroutes:\n  - {name: v3, to: nowhere}\n"


def _write(path: Path, text: str, bump: int) -> None:
    path.write_text(text)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + bump * 1_000_000_000))


def _watcher(path: Path) -> RulesWatcher:
    return RulesWatcher(path, interval_s=0.0)


def test_valid_edit_swaps_and_logs_the_new_hash(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    _write(path, V1, 0)
    watcher = _watcher(path)
    old = watcher.current()
    assert not watcher.poll()  # nothing changed
    _write(path, V2, 1)
    with capture_logs() as logs:
        assert watcher.poll()
    new = watcher.current()
    assert new.routes[0].name == "v2" and old.routes[0].name == "v1"  # a running job keeps `old`
    assert new.decide(photo_dataset()).action is RouteAction.DROP
    (event,) = [e for e in logs if e["event"] == "rules.reloaded"]
    assert event["sha256"] == hashlib.sha256(V2.encode()).hexdigest() == new.sha256
    assert event["previous_sha256"] == old.sha256


def test_broken_edit_is_rejected_logged_once_and_old_rules_keep_serving(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    _write(path, V1, 0)
    watcher = _watcher(path)
    _write(path, BROKEN, 1)
    with capture_logs() as logs:
        assert not watcher.poll()
        assert not watcher.poll(force=True)  # same broken content: not reported again
    assert watcher.current().routes[0].name == "v1"
    assert watcher.current().decide(photo_dataset()).action is RouteAction.FORWARD
    (event,) = [e for e in logs if e["event"] == "rules.rejected"]
    assert event["log_level"] == "error"
    assert any(":3:" in line and "destination 'nowhere' is not defined" in line for line in event["errors"])
    _write(path, V2, 2)  # the admin fixes it
    assert watcher.poll() and watcher.current().routes[0].name == "v2"


def test_edit_of_an_included_file_is_noticed(tmp_path: Path) -> None:
    inc = tmp_path / "dest.yaml"
    _write(inc, "destinations: {out: {folder: out}}\n", 0)
    path = tmp_path / "rules.yaml"
    _write(path, "include: dest.yaml\nroutes:\n  - {name: r, to: out}\n", 0)
    watcher = _watcher(path)
    _write(inc, "destinations: {out: {folder: elsewhere}}\n", 1)
    assert watcher.poll()
    assert str(watcher.current().destinations["out"].path) == "elsewhere"  # type: ignore[union-attr]


def test_interval_limits_how_often_files_are_checked(tmp_path: Path) -> None:
    now = [100.0]
    path = tmp_path / "rules.yaml"
    _write(path, V1, 0)
    watcher = RulesWatcher(path, interval_s=5.0, clock=lambda: now[0])
    _write(path, V2, 1)
    assert not watcher.poll()
    now[0] += 5.0
    assert watcher.poll()


def test_an_invalid_file_at_start_fails_closed(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(BROKEN)
    with pytest.raises(RulesError):
        RulesWatcher(path)


def test_deleted_file_keeps_the_old_rules_until_it_returns(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    _write(path, V1, 0)
    watcher = _watcher(path)
    path.unlink()
    with capture_logs() as logs:
        assert not watcher.poll()
    assert watcher.current().routes[0].name == "v1"
    assert [e["event"] for e in logs] == ["rules.rejected"]
    _write(path, V2, 1)
    assert watcher.poll() and watcher.current().routes[0].name == "v2"


def test_an_edit_during_a_load_is_picked_up_by_the_next_poll(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dicom_rules.watcher as watcher_module

    path = tmp_path / "rules.yaml"
    _write(path, V1, 0)
    watcher = _watcher(path)
    from dicom_rules import RuleSet, load_rules

    def load_then_edit(p: Path, **kwargs: str) -> RuleSet:
        rules = load_rules(p, **kwargs)
        _write(path, V1.replace("v1", "v1b"), 3)  # the admin saves again while we were loading
        return rules

    _write(path, V2, 1)
    monkeypatch.setattr(watcher_module, "load_rules", load_then_edit)
    assert watcher.poll() and watcher.current().routes[0].name == "v2"
    monkeypatch.setattr(watcher_module, "load_rules", load_rules)
    assert watcher.poll() and watcher.current().routes[0].name == "v1b"
