"""Every console route, role and failure through Starlette's TestClient (no browser): login and its rate
limit, sessions, CSRF, roles, the quarantine actions with their audit, rules check/save/explain, hostile
ids."""

from __future__ import annotations

import re
from io import BytesIO
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from gateway.console.users import write_user
from gateway.ops.admin import Role
from tests.conftest import make_small_sc
from tests.console.conftest import FAST_HASHER, PASSWORDS, ConsoleEnv, csrf_of, login, make_env

PAGES = ["/", "/studies", "/studies/1", "/studies/2", "/quarantine", "/quarantine/1", "/rules", "/audit"]


def _actions(action: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "vera_gateway_admin_actions_total", {"action": action, "outcome": outcome}
    )
    return value or 0.0


@pytest.mark.parametrize("path", [*PAGES, "/rules/explain"])
def test_unauthenticated_requests_go_to_the_login_page(console: ConsoleEnv, path: str) -> None:
    response = console.client().get(path)
    assert response.status_code == 303 and response.headers["location"] == "/login"


def test_every_page_renders_for_viewer_and_admin(console: ConsoleEnv) -> None:
    for user in ("victor", "alice"):
        client = console.client(user)
        for path in PAGES:
            response = client.get(path)
            assert response.status_code == 200, (user, path, response.text[:500])
            assert f"{user} (" in response.text


def test_wrong_password_is_refused_and_logins_are_rate_limited(console: ConsoleEnv) -> None:
    client = console.client()
    response = login(client, "alice", "wrong")
    assert response.status_code == 401 and "Wrong user name or password" in response.text
    assert login(client, "nobody", "wrong").status_code == 401  # unknown name: same answer
    for _ in range(4):
        login(client, "alice", "wrong")
    throttled = login(client, "alice", PASSWORDS["alice"])  # right password, but too many failures
    assert throttled.status_code == 429 and int(throttled.headers["retry-after"]) > 0
    assert client.get("/").status_code == 303


def test_session_cookie_is_httponly_samesite_strict_and_secure_only_under_tls(tmp_path: Path) -> None:
    from gateway.console.app import create_app

    env = make_env(tmp_path)
    cookie = login(env.client(), "alice", PASSWORDS["alice"]).headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "secure" not in cookie
    users = env.config.resolve(env.config.console.users_file)  # type: ignore[union-attr]
    tls_app = create_app(env.admin, env.config.console, b"s" * 32, users, tls=True)  # type: ignore[arg-type]
    from starlette.testclient import TestClient

    with TestClient(tls_app, base_url="https://testserver", follow_redirects=False) as client:
        cookie = login(client, "alice", PASSWORDS["alice"]).headers["set-cookie"].lower()
        assert "secure" in cookie
        assert "max-age=31536000" in client.get("/login").headers["strict-transport-security"]


def test_security_headers_forbid_inline_scripts_framing_and_referrers(console: ConsoleEnv) -> None:
    client = console.client("victor")
    for path in ("/login", "/", "/quarantine/1", "/nope"):
        headers = client.get(path).headers
        csp = headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        assert headers["referrer-policy"] == "no-referrer" and headers["x-frame-options"] == "DENY"
        assert headers["cache-control"] == "no-store"
    page = client.get("/").text
    assert "<script>" not in page and "onclick" not in page and 'style="' not in page


def test_posts_without_the_csrf_token_are_refused(console: ConsoleEnv) -> None:
    client = console.client()
    csrf_of(client)
    assert (
        client.post("/login", data={"username": "alice", "password": PASSWORDS["alice"]}).status_code == 403
    )
    client = console.client("alice")
    item = console.ids["item"]
    response = client.post(f"/quarantine/{item}/replay", data={"confirm": "yes"})
    assert response.status_code == 403 and "CSRF" in response.text
    forged = client.post(f"/quarantine/{item}/replay", data={"confirm": "yes", "csrf_token": "forged"})
    assert forged.status_code == 403
    assert console.admin.quarantine_detail(item).item.released_at is None  # type: ignore[union-attr]
    assert client.post("/logout", data={}).status_code == 403


def test_viewer_pressing_replay_is_refused_and_audited(console: ConsoleEnv) -> None:
    client = console.client("victor")
    item = console.ids["item"]
    assert "Replay and discard need the admin role" in client.get(f"/quarantine/{item}").text
    before = _actions("replay", "denied")
    token = csrf_of(client, f"/quarantine/{item}")
    response = client.post(f"/quarantine/{item}/replay", data={"confirm": "yes", "csrf_token": token})
    assert response.status_code == 403 and "admin role" in response.text
    assert console.admin.quarantine_detail(item).item.released_at is None  # type: ignore[union-attr]
    (entry,) = console.admin.audit_log()
    assert (entry.actor, entry.action, entry.outcome) == ("victor", "replay", "denied")
    assert _actions("replay", "denied") == before + 1
    assert client.post("/rules/save", data={"text": "x", "csrf_token": token}).status_code == 403


def test_admin_replay_needs_confirmation_then_regroups_and_is_audited(console: ConsoleEnv) -> None:
    client = console.client("alice")
    item = console.ids["item"]
    token = csrf_of(client, f"/quarantine/{item}")
    unconfirmed = client.post(f"/quarantine/{item}/replay", data={"csrf_token": token})
    assert unconfirmed.status_code == 400 and "confirm" in unconfirmed.text
    before = _actions("replay", "done")
    data = {"confirm": "yes", "csrf_token": token, "reason": "rule fixed: no_face mask"}
    response = client.post(f"/quarantine/{item}/replay", data=data)
    assert response.status_code == 303 and response.headers["location"] == f"/quarantine/{item}"
    page = client.get(f"/quarantine/{item}").text
    assert "replay done, instance is now received" in page and "rule fixed: no_face mask" in page
    assert console.ledger.counts().instances["received"].count == 1
    (entry,) = console.admin.audit_log()
    assert (entry.actor, entry.action, entry.target) == ("alice", "replay", f"quarantine:{item}")
    assert _actions("replay", "done") == before + 1
    again = client.post(f"/quarantine/{item}/replay", data=data)
    assert again.status_code == 404  # released already
    assert "alice" in client.get("/audit").text


def test_discard_needs_a_reason_and_drops_the_instance(console: ConsoleEnv) -> None:
    client = console.client("alice")
    item = console.ids["item"]
    token = csrf_of(client, f"/quarantine/{item}")
    response = client.post(f"/quarantine/{item}/discard", data={"confirm": "yes", "csrf_token": token})
    assert response.status_code == 400 and "reason" in response.text
    data = {"confirm": "yes", "csrf_token": token, "reason": "test photo, not for research"}
    assert client.post(f"/quarantine/{item}/discard", data=data).status_code == 303
    assert console.ledger.counts().instances["dropped"].count == 1
    assert "quarantined" not in console.ledger.counts().instances
    assert "nothing in quarantine" in client.get("/quarantine").text
    assert f'data-item="{item}"' in client.get("/quarantine?all=1").text
    assert "test photo, not for research" in client.get(f"/quarantine/{item}").text
    assert client.post(f"/quarantine/{item}/explode", data=data).status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        "/quarantine/..%2F..%2Fetc%2Fpasswd",
        "/quarantine/1%2F..%2F..%2Fledger.sqlite3",
        "/studies/-1",
        "/studies/1e3",
        "/studies/99999",
        "/quarantine/99999",
        "/static/..%2Fapp.py",
        "/static/../users.py",
    ],
)
def test_hostile_ids_and_paths_are_not_found(console: ConsoleEnv, path: str) -> None:
    response = console.client("alice").get(path)
    assert response.status_code == 404
    assert "import" not in response.text and "SQLite" not in response.text


def test_search_filters_by_job_id_state_and_pseudonym(console: ConsoleEnv) -> None:
    client = console.client("victor")
    assert 'data-job="2"' in client.get("/studies?state=quarantined").text
    assert 'data-job="1"' not in client.get("/studies?state=quarantined").text
    assert 'data-job="1"' in client.get("/studies?q=pseudo-patient-1").text
    assert 'data-job="2"' not in client.get("/studies?q=1").text
    assert "no study matches" in client.get("/studies?q=%25").text  # LIKE wildcards are literal
    assert client.get("/studies?state=bogus&since=forever").status_code == 200  # unknown filters ignored


def test_trail_shows_each_state_change_and_stage_durations(console: ConsoleEnv) -> None:
    page = console.client("victor").get("/studies/1").text
    for state in ("received", "grouped", "processing", "deidentified", "forwarded"):
        assert f"state-{state}" in page
    assert "sop-key-1"[:9] in page and "2.25.1" not in page  # output UID only as a hash


def test_rules_check_reports_line_and_column_and_save_writes_the_file(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(Path("dicom_rules/default.yaml").read_text())
    env = make_env(tmp_path, rules_file=rules)
    client = env.client("alice")
    token = csrf_of(client, "/rules")
    broken = "version: 1\nname: x\nroutes:\n  - name: r\n    pixels: {mode: sideways}\n    to: nowhere\n"
    page = client.post("/rules/check", data={"text": broken, "csrf_token": token}).text
    assert "problem(s)" in page and "line 5, column" in page
    assert client.post("/rules/save", data={"text": broken, "csrf_token": token}).status_code == 400
    assert rules.read_text() != broken
    fixed = rules.read_text().replace("no_face: quarantine", "no_face: mask")
    assert "Valid: default" in client.post("/rules/check", data={"text": fixed, "csrf_token": token}).text
    response = client.post("/rules/save", data={"text": fixed, "csrf_token": token})
    assert response.status_code == 303 and rules.read_text() == fixed
    (entry,) = env.admin.audit_log()
    assert entry.action == "rules-save" and entry.actor == "alice"


def test_explain_shows_the_route_and_before_after_to_an_admin_only(
    console: ConsoleEnv, tmp_path: Path
) -> None:
    buf = BytesIO()
    make_small_sc().save_as(buf, enforce_file_format=True)
    viewer = console.client("victor")
    assert viewer.get("/rules/explain").status_code == 403
    client = console.client("alice")
    token = csrf_of(client, "/rules/explain")
    files = {"file": ("photo.dcm", buf.getvalue(), "application/dicom")}
    page = client.post("/rules/explain", data={"csrf_token": token}, files=files).text
    assert "Decision: forward" in page and "PatientName" in page and "Doe^Jane^Q" in page
    assert not list(tmp_path.rglob("photo.dcm"))
    denied = viewer.post("/rules/explain", data={"csrf_token": csrf_of(viewer, "/")}, files=files)
    assert denied.status_code == 403


def test_explain_refuses_non_dicom_huge_and_tokenless_uploads(
    console: ConsoleEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = console.client("alice")
    token = csrf_of(client, "/rules/explain")
    response = client.post(
        "/rules/explain",
        data={"csrf_token": token},
        files={"file": ("a.txt", b"hello, not DICOM", "text/plain")},
    )
    assert response.status_code == 400 and "not a DICOM file" in response.text
    response = client.post("/rules/explain", data={"csrf_token": token}, files={"file": ("a.dcm", b"", "x")})
    assert response.status_code == 400
    import gateway.console.views as views

    monkeypatch.setattr(views, "MAX_UPLOAD_BYTES", 1000)
    huge = {"file": ("big.dcm", b"\0" * 200_000, "application/dicom")}
    response = client.post("/rules/explain", data={"csrf_token": token}, files=huge)
    assert response.status_code == 413 and "larger than" in response.text
    tokenless = client.post("/rules/explain", files={"file": ("a.dcm", b"x", "x")})
    assert tokenless.status_code == 403


def test_a_removed_user_loses_the_open_session_and_a_demotion_applies_at_once(console: ConsoleEnv) -> None:
    client = console.client("alice")
    users = console.config.resolve(console.config.console.users_file)  # type: ignore[union-attr]
    write_user(users, "alice", Role.VIEWER, PASSWORDS["alice"], FAST_HASHER)
    assert "alice (viewer)" in client.get("/").text
    users.write_text(users.read_text().replace("alice:", "alicia:"))
    assert client.get("/").status_code == 303


def test_trusted_proxy_header_is_believed_only_from_trusted_addresses(tmp_path: Path) -> None:
    env = make_env(tmp_path, trusted_proxy_header="X-Remote-User", trusted_proxies=["127.0.0.1"])
    proxied = env.client(address="127.0.0.1")
    page = proxied.get("/", headers={"X-Remote-User": "alice"})
    assert page.status_code == 200 and "alice (admin)" in page.text
    assert "carol (viewer)" in proxied.get("/", headers={"X-Remote-User": "carol"}).text
    outsider = env.client(address="10.9.8.7")
    assert outsider.get("/", headers={"X-Remote-User": "alice"}).status_code == 303


def test_cli_discard_is_audited_and_shown_in_the_console(
    console: ConsoleEnv, capsys: pytest.CaptureFixture[str]
) -> None:
    from gateway.cli import main as cli_main

    data = ["--data-dir", str(console.config.data_dir)]
    item = str(console.ids["item"])
    assert cli_main(["quarantine", "discard", item, "--reason", "duplicate test photo", *data]) == 0
    assert "instance is now dropped" in capsys.readouterr().out
    assert cli_main(["audit", *data]) == 0
    assert "duplicate" in capsys.readouterr().out
    page = console.client("victor").get("/audit").text
    assert "duplicate test photo" in page and "cli:" in page
    assert cli_main(["studies", "show", "1", *data]) == 0
    assert "forwarded" in capsys.readouterr().out


def test_an_oversized_form_is_refused_before_it_is_parsed(console: ConsoleEnv) -> None:
    client = console.client("alice")
    token = csrf_of(client, "/rules")
    response = client.post("/rules/check", data={"text": "x" * (4 * 1024 * 1024), "csrf_token": token})
    assert response.status_code == 413 and "larger than" in response.text
    assert client.post("/login", data={"username": "a" * (4 * 1024 * 1024)}).status_code == 413


def test_logout_ends_the_session(console: ConsoleEnv) -> None:
    client = console.client("victor")
    token = csrf_of(client, "/")
    response = client.post("/logout", data={"csrf_token": token})
    assert response.status_code == 303 and response.headers["location"] == "/login"
    assert client.get("/").status_code == 303


def test_cli_quarantine_show_names_the_received_file_and_readable_times(
    console: ConsoleEnv, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway.cli import main as cli_main

    monkeypatch.setenv("COLUMNS", "400")  # rich: paths on one line
    data = ["--data-dir", str(console.config.data_dir)]
    received_item = console.ledger.quarantine_received("undecodable:ValueError", "cd/cdef.bin", "HOSP_PACS")
    assert cli_main(["quarantine", "show", str(console.ids["item"]), *data]) == 0
    shown = capsys.readouterr().out
    assert str(console.config.spool_dir / "ab" / "2.dcm") in shown  # the pipeline item: its spool file
    assert re.search(r"created_at\W+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", shown), shown
    assert cli_main(["quarantine", "show", str(received_item), *data]) == 0
    assert str(console.config.quarantine_dir / "cd" / "cdef.bin") in capsys.readouterr().out
