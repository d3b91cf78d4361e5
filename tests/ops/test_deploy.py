"""deploy/: what can be checked without Docker — the systemd unit verified by systemd, the compose file parsed
and its service config loaded by the gateway's own loader, the image's pins consistent with pyproject.toml."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement

from gateway.core.config import load_config

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
UNIT = DEPLOY / "systemd" / "vera-gateway.service"


def _pyproject_requirements() -> dict[str, Requirement]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    reqs = [Requirement(r) for r in data["project"]["dependencies"]]
    return {_norm(r.name): r for r in reqs}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _constraints() -> dict[str, str]:
    pins = {}
    for line in (DEPLOY / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints.txt line {line!r} is not pinned with =="
            pins[_norm(name)] = version
    return pins


def _compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


# ---- image ---------------------------------------------------------------------------------------------


def test_constraints_agree_with_pyproject() -> None:
    """Exact pins of pyproject are the image's pins; every other pin lies inside pyproject's range. (A newly
    appended dependency without a pin is reported by the second test, not here, so main stays green.)"""
    pins = _constraints()
    for name, req in _pyproject_requirements().items():
        exact = str(req.specifier).startswith("==")
        if exact:
            assert pins.get(name) == str(req.specifier)[2:], (
                f"{name}: pyproject {req}, constraints {pins.get(name)}"
            )
        if name in pins:
            assert req.specifier.contains(pins[name], prereleases=True), (
                f"{name}=={pins[name]} violates {req}"
            )


def test_constraints_pin_the_core_stack() -> None:
    pins = _constraints()
    core = (
        "torch",
        "torchvision",
        "pydicom",
        "pynetdicom",
        "numpy",
        "pydantic",
        "facenet-pytorch",
        "dlib-bin",
    )
    assert all(name in pins for name in core), [n for n in core if n not in pins]


def test_dockerfile_installs_the_same_torch_pair_as_pyproject() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    reqs = _pyproject_requirements()
    for name in ("torch", "torchvision"):
        pinned = str(reqs[name].specifier)
        assert pinned.startswith("==")
        installs = re.findall(rf"\b{name}==([\w.+]+)", text)
        assert installs and set(installs) == {pinned[2:]}, (
            f"Dockerfile {name} pins {installs} ≠ pyproject {pinned}"
        )
    assert "-c deploy/constraints.txt" in text


def test_dockerfile_is_multistage_cuda_runtime_nonroot_with_volume_and_healthcheck() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    base = re.search(r"^ARG CUDA_IMAGE=(\S+)", text, re.M)
    assert base and re.fullmatch(r"nvidia/cuda:\d+\.\d+\.\d+-cudnn-runtime-ubuntu\d\d\.\d\d", base.group(1))
    assert len(re.findall(r"^FROM ", text, re.M)) >= 3
    user = re.findall(r"^USER (\S+)", text, re.M)
    assert user and user[-1].split(":")[0] not in ("root", "0")
    assert re.search(r'^VOLUME \["/var/lib/vera-gateway"\]', text, re.M)
    assert re.search(r"^HEALTHCHECK .*\n?.*/healthz", text, re.M)
    config = load_config(DEPLOY / "compose" / "gateway.yaml")
    assert f":{config.metrics_port}/healthz" in text
    for line in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.M):
        for src in line.split():
            assert (ROOT / src).exists(), f"Dockerfile copies missing {src}"


# ---- compose -------------------------------------------------------------------------------------------


def test_compose_wires_gateway_to_orthanc_and_its_config_loads() -> None:
    compose = _compose()
    gateway, orthanc = compose["services"]["gateway"], compose["services"]["orthanc"]
    assert gateway["build"]["dockerfile"] == "deploy/Dockerfile"
    mounts = {m.split(":")[1]: m.split(":")[0] for m in gateway["volumes"]}
    assert mounts["/var/lib/vera-gateway"] in compose["volumes"]
    for target, source in mounts.items():
        if source.startswith("./"):
            assert (DEPLOY / source).exists(), f"compose mounts missing {source} at {target}"
    config = load_config(DEPLOY / mounts["/etc/vera-gateway/gateway.yaml"].removeprefix("./"))
    assert str(config.data_dir) == "/var/lib/vera-gateway" and config.bind == "0.0.0.0"
    assert any(p.endswith(f":{config.port}") for p in gateway["ports"])
    assert Path(str(config.rules_file)).name in {Path(t).name for t in mounts}
    orthanc_cfg = json.loads((DEPLOY / "compose" / "orthanc.json").read_text())
    assert config.ae_title in {v[0] for v in orthanc_cfg["DicomModalities"].values()}
    assert any("/etc/orthanc/orthanc.json" in m for m in orthanc["volumes"])


def test_compose_rules_send_to_the_compose_orthanc() -> None:
    rules = _load_rules(DEPLOY / "compose" / "rules.yaml")
    orthanc_cfg = json.loads((DEPLOY / "compose" / "orthanc.json").read_text())
    dest = rules.destinations["research-orthanc"]
    assert (dest.ae_title, dest.host, dest.port) == (
        orthanc_cfg["DicomAet"],
        "orthanc",
        orthanc_cfg["DicomPort"],
    )


def test_gpu_overlay_reserves_one_nvidia_gpu() -> None:
    overlay = yaml.safe_load((DEPLOY / "compose.gpu.yaml").read_text())
    devices = overlay["services"]["gateway"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]


# ---- site examples -------------------------------------------------------------------------------------


def test_site_example_config_loads_with_tls_listener_and_limits() -> None:
    config = load_config(DEPLOY / "site" / "gateway.yaml")
    assert config.tls is not None and config.tls.port != config.port and config.tls.require_peer_certificate
    assert config.check_called_ae and config.max_associations_per_source <= config.max_associations


def test_site_example_rules_load_and_use_tls_to_the_research_pacs() -> None:
    rules = _load_rules(DEPLOY / "site" / "rules.yaml")
    dest = rules.destinations["research-pacs"]
    assert dest.tls is not None and dest.tls.require_peer_certificate
    assert {s.ae_title for s in rules.sources} >= {"HOSP_PACS"}


def _load_rules(path: Path) -> Any:
    from dicom_rules import load_rules

    try:
        return load_rules(path)
    except NotImplementedError:  # pragma: no cover - before the rule loader landed
        pytest.skip("dicom_rules.load_rules is not implemented yet")


# ---- systemd -------------------------------------------------------------------------------------------


def test_systemd_unit_is_hardened() -> None:
    text = UNIT.read_text()
    for directive in (
        "User=vera-gateway",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/vera-gateway",
        "NoNewPrivileges=yes",
        "Restart=on-failure",
        "CapabilityBoundingSet=\n",
        "PrivateTmp=yes",
    ):
        assert directive in text, directive
    assert (DEPLOY / "systemd" / "vera-gateway.env.example").read_text().count("VERA_GATEWAY_CONFIG=") == 1


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    exe = Path(sys.prefix) / "bin" / "vera-gateway"
    if not exe.exists():
        pytest.skip("the vera-gateway console script is not installed in this environment")
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace("/opt/vera-gateway/.venv", sys.prefix))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr
    broken = tmp_path / "broken" / UNIT.name
    broken.parent.mkdir()
    broken.write_text(unit.read_text().replace("ProtectSystem=strict", "ProtectSystem=bogus"))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(broken)], capture_output=True, text=True, timeout=60
    )
    assert "protect system value" in result.stderr  # the check can fail


# ---- the commands the deployment runs, against the real CLI --------------------------------------------


def _unit_commands() -> list[list[str]]:
    env = {"${VERA_GATEWAY_CONFIG}": "/etc/vera-gateway/gateway.yaml"}
    commands = []
    for line in UNIT.read_text().splitlines():
        if line.startswith(("ExecStart=", "ExecStartPre=")):
            argv = line.split("=", 1)[1].split()
            commands.append([env.get(a, a) for a in argv[1:]])
    return commands


def _image_commands() -> list[list[str]]:
    text = (DEPLOY / "Dockerfile").read_text()
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", text, re.M).group(1))  # type: ignore[union-attr]
    return [cmd, _compose()["services"]["gateway"]["command"]]


def test_unit_image_and_compose_commands_parse_with_the_real_cli() -> None:
    from gateway.cli.app import build_parser

    commands = _unit_commands() + _image_commands()
    assert len(commands) == 4
    for argv in commands:
        args = build_parser().parse_args(argv)
        assert callable(args.func), argv


@pytest.mark.integration
def test_image_healthcheck_command_passes_against_a_running_gateway(tmp_path: Path) -> None:
    from tests.gateway.conftest import wait_until
    from tests.ops.peers import free_port

    config = yaml.safe_load((DEPLOY / "compose" / "gateway.yaml").read_text())
    metrics_port = free_port()
    config.update(
        data_dir=str(tmp_path / "data"),
        bind="127.0.0.1",
        port=free_port(),
        metrics_bind="127.0.0.1",
        metrics_port=metrics_port,
        rules_file=None,
        workers=0,
    )
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    text = (DEPLOY / "Dockerfile").read_text()
    found = re.search(r"HEALTHCHECK[^\n]*\\\n\s*CMD (\[[^\n]*\])", text)
    assert found, "no HEALTHCHECK CMD in the Dockerfile"
    check = json.loads(found.group(1))
    check = [
        sys.executable if a == "/opt/vera/bin/python" else a.replace(":9108/", f":{metrics_port}/")
        for a in check
    ]

    def healthy() -> bool:
        return subprocess.run(check, capture_output=True, timeout=10).returncode == 0

    assert not healthy()  # nothing runs yet: the check can fail
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "serve", "--config", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    try:
        assert wait_until(healthy, timeout=60, interval=0.3)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.slow
def test_installed_package_carries_the_runtime_data_files(tmp_path: Path) -> None:
    """The image installs a wheel (not editable): rule files and generated tables must be in it."""
    import zipfile

    src = tmp_path / "src"
    listed = subprocess.run(
        ["git", "ls-files", "pyproject.toml", "README.md", "gateway", "anonymizer", "dicom_rules"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout.split()
    if not listed:
        pytest.skip("not a git checkout")
    for name in listed:
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, src / name)
    build = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "-q",
        "--no-deps",
        "--no-build-isolation",
        "-w",
        str(tmp_path),
    ]
    subprocess.run([*build, str(src)], check=True, capture_output=True, timeout=120)
    wheel = next(tmp_path.glob("vera_gateway-*.whl"))
    packaged = set(zipfile.ZipFile(wheel).namelist())
    runtime_data = [n for n in listed if n.endswith(".yaml") or "/data/" in n]
    assert runtime_data and not [n for n in runtime_data if n not in packaged]
    assert "gateway/ops/doctor.py" in packaged and "gateway/ops/tls.py" in packaged


def test_compose_donor_bank_is_inside_the_read_only_donors_mount() -> None:
    config = load_config(DEPLOY / "compose" / "gateway.yaml")
    mounts = {m.split(":")[1]: m for m in _compose()["services"]["gateway"]["volumes"]}
    donors = mounts["/var/lib/vera-gateway/donors"]
    assert donors.endswith(":ro") and config.donor_bank_path.parent == Path("/var/lib/vera-gateway/donors")


# ---- cluster compose (deploy/cluster) ----------------------------------------------------------------------


def test_cluster_compose_runs_every_role_on_one_config_that_loads() -> None:
    cluster = DEPLOY / "cluster"
    compose = yaml.safe_load((cluster / "compose.yaml").read_text())
    services = compose["services"]
    commands = {name: svc.get("command", []) for name, svc in services.items()}
    roles = sorted(c[c.index("--role") + 1] for c in commands.values() if "--role" in c)
    assert roles == ["forward", "receive", "receive"]
    assert sum(1 for c in commands.values() if c[:1] == ["worker"]) == 2
    assert commands["cluster-init"][:2] == ["db", "upgrade"]
    gateway_mounts = {m.split(":")[1]: m.split(":")[0] for m in services["receiver-1"]["volumes"]}
    for source in gateway_mounts.values():
        if source.startswith("."):
            assert (cluster / source).resolve().exists(), source
    config = load_config(cluster / "gateway.yaml")
    assert config.clustered and config.object_store is not None and config.bind == "0.0.0.0"
    assert str(config.secret_path).startswith("/var/lib/vera-gateway/keys/")
    assert config.ledger is not None and "@postgres:" in config.ledger and ":change-me@" not in config.ledger
    haproxy = (cluster / "haproxy.cfg").read_text()
    assert "mode tcp" in haproxy and all(
        f"server {r} {r}:{config.port}" in haproxy for r in ("receiver-1", "receiver-2")
    )
    gpu = yaml.safe_load((cluster / "compose.gpu.yaml").read_text())["services"]
    assert set(gpu) == {"worker-1", "worker-2"}
    assert all(s["deploy"]["resources"]["reservations"]["devices"][0]["count"] == 1 for s in gpu.values())
