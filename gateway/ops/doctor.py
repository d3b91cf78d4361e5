"""`vera-gateway doctor`: check an installation before it receives patients' photos.

Each check is a small function returning :class:`Check` results (ok / warn / fail, what was found, and for a
failure the fix). The command prints a table and exits 1 when any check failed, so it can gate a deployment
(`vera-gateway doctor && systemctl start vera-gateway`). Output names files, hosts and AE titles only.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata as metadata
import json
import os
import platform
import shutil
import stat
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from anonymizer.engines import engine_options
from anonymizer.plans import PixelMode, PixelPlan, TextAction
from dicom_rules import RuleSet
from dicom_rules.decision import DicomDestination, DicomWebDestination, FolderDestination, RouteAction

MIN_PYTHON = (3, 11)
MIN_FREE_BYTES = 2 * 1024**3
MIN_GPU_FREE_BYTES = 2 * 1024**3
PROBE_BYTES = 8 * 1024**2
SLOW_WRITE_MB_S = 20.0
ASSET_KEYS = ("donor_bank", "bank", "weights", "checkpoint", "model")
ASSET_SUFFIXES = ("_path", "_file", "_dir")
CERT_WARN_DAYS = 30
ENGINES_NEEDING_ASSETS = {"surrogate": "donor bank", "vera": "checkpoint"}


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""


def ok(name: str, detail: str) -> Check:
    return Check(name, Status.OK, detail)


def warn(name: str, detail: str, fix: str = "") -> Check:
    return Check(name, Status.WARN, detail, fix)


def fail(name: str, detail: str, fix: str) -> Check:
    return Check(name, Status.FAIL, detail, fix)


# ---- environment ---------------------------------------------------------------------------------------


def check_python() -> Iterator[Check]:
    version = platform.python_version()
    if sys.version_info[:2] < MIN_PYTHON:
        yield fail("python", version, "install Python 3.11 or newer and recreate the venv (make setup)")
    else:
        yield ok("python", f"{version} ({sys.executable})")


def check_packages(dist: str = "vera-gateway") -> Iterator[Check]:
    """Every declared dependency of the installed project is present at a satisfying version."""
    from packaging.requirements import Requirement

    try:
        requires = metadata.requires(dist) or []
    except metadata.PackageNotFoundError:
        yield fail("packages", f"{dist} is not installed", "run: make setup (pip install -e .)")
        return
    problems, versions, checked = [], [], 0
    for text in requires:
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        checked += 1
        try:
            have = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            problems.append(f"{req.name} missing")
            continue
        if req.specifier and not req.specifier.contains(have, prereleases=True):
            problems.append(f"{req.name} {have} (needs {req.specifier})")
        if req.name in ("torch", "torchvision", "pydicom", "pynetdicom"):
            versions.append(f"{req.name} {have}")
    if problems:
        yield fail("packages", "; ".join(problems), "run: make setup (reinstalls the pinned stack)")
    else:
        yield ok("packages", ", ".join(versions) + f"; {checked} requirements satisfied")


def check_torch() -> Iterator[Check]:
    try:
        import torch
    except Exception as exc:
        yield fail(
            "torch", f"import failed: {exc}", "run: make setup (torch==2.14.1 with torchvision==0.29.1)"
        )
        return
    if not torch.cuda.is_available():
        yield warn(
            "torch device",
            f"CPU only (torch {torch.__version__})",
            "for GPU inference install the NVIDIA driver and run with the GPU visible (docker: --gpus all)",
        )
        return
    for index in range(torch.cuda.device_count()):
        free, total = torch.cuda.mem_get_info(index)
        detail = (
            f"{torch.cuda.get_device_name(index)}, {free / 1024**3:.1f} of {total / 1024**3:.1f} GiB free"
        )
        if free < MIN_GPU_FREE_BYTES:
            yield warn(f"cuda:{index}", detail, "another process holds the GPU memory (nvidia-smi); stop it")
        else:
            yield ok(f"cuda:{index}", detail)


# ---- engine assets ---------------------------------------------------------------------------------------


def pixel_plans(rules: RuleSet) -> list[tuple[str, PixelPlan]]:
    """(route name, pixel plan) of every route of the rule set that anonymizes pixels."""
    found: list[tuple[str, PixelPlan]] = []
    candidates: list[Any] = [*getattr(rules, "routes", ()), rules.catch_all]
    for route in candidates:
        if route is None:
            continue
        plan = getattr(route, "pixels", None) or getattr(getattr(route, "decision", None), "pixels", None)
        name = str(getattr(route, "route_name", None) or getattr(route, "name", "route"))
        if isinstance(plan, PixelPlan) and plan.mode == PixelMode.ANONYMIZE:
            found.append((name, plan))
    return found


def check_ocr(rules: RuleSet) -> Iterator[Check]:
    """Routes that check pixels for text need tesseract (it must load and read its self-test line) and the
    text step's pre-OCR filter weights (present, matching their sha256)."""
    from anonymizer.text import filter as text_filter
    from anonymizer.text.ocr import OcrUnavailable, self_test

    candidates: list[Any] = [*getattr(rules, "routes", ()), rules.catch_all]
    decisions = [getattr(r, "decision", r) for r in candidates if r is not None]
    plans = [d.pixels for d in decisions if getattr(d, "action", None) == RouteAction.FORWARD]
    if not any(isinstance(p, PixelPlan) and p.mode != PixelMode.BLANK and p.text.action != TextAction.KEEP
               for p in plans):
        return
    try:
        version = self_test()
        text_filter.load(text_filter.WEIGHTS)
        yield ok("text OCR", version)
    except OcrUnavailable as exc:
        yield fail("text OCR", f"{exc}; every photo would be quarantined (ocr-unavailable)",
                   "apt-get install tesseract-ocr tesseract-ocr-eng; pip install tesserocr; reinstall the "
                   "package if anonymizer/text/filter_net.* is missing")


def _asset_paths(options: dict[str, Any]) -> dict[str, Path]:
    assets = {}
    for key, value in options.items():
        if isinstance(value, (str, Path)) and (key in ASSET_KEYS or key.endswith(ASSET_SUFFIXES)):
            assets[key] = Path(value).expanduser()
    return assets


def sha256_of(path: Path) -> str:
    """sha256 of a file, or of a folder's files (sorted relative names and contents)."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with file.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def _expected_hash(path: Path, options: dict[str, Any], key: str) -> str | None:
    given = options.get(f"{key}_sha256")
    if given:
        return str(given).lower()
    sidecar = path.with_name(path.name + ".sha256")
    if sidecar.is_file():
        return sidecar.read_text().split()[0].lower()
    return None


def _check_asset(
    label: str, key: str, path: Path, options: dict[str, Any], resolve: Callable[[Path], Path]
) -> Check:
    path = resolve(path)
    if not path.exists():
        return fail(
            label,
            f"{key} {path} is missing",
            f"create it (donor bank: vera-gateway donors build DIR -o "
            f"{path}; VerA: copy the checkpoint) or fix engine_options.{key} in the rule file",
        )
    digest = sha256_of(path)
    expected = _expected_hash(path, options, key)
    if expected and expected != digest:
        return fail(
            label,
            f"{key} {path} sha256 {digest[:16]}… ≠ expected {expected[:16]}…",
            "the file is damaged or not the released one; copy it again",
        )
    return ok(label, f"{key} {path} sha256 {digest[:16]}…" + (" (verified)" if expected else ""))


def _engine_loads(label: str, engine_name: str, options: dict[str, Any]) -> Check:
    from anonymizer.engines import load_engine

    try:
        engine = load_engine(engine_name, dict(options))
        _ = engine.crop_size  # engines may load their assets lazily; this makes them load now
    except Exception as exc:
        return fail(
            label,
            f"engine {engine_name!r} does not load: {exc}",
            "install the engine's assets (see the README) or choose another engine in the rule file",
        )
    return ok(label, f"engine {engine_name!r} loads")


def check_engines(
    rules: RuleSet, resolve: Callable[[Path], Path], engine_defaults: dict[str, dict[str, Any]] | None = None
) -> Iterator[Check]:
    """Each engine the rules use, with its options merged over the service's defaults the way the pixel
    stage merges them (rule options win): assets present, hashes, and the engine loads them."""
    seen: set[str] = set()
    for route, plan in pixel_plans(rules):
        options = engine_options(plan.engine, plan.engine_options, engine_defaults)
        key = plan.engine + json.dumps(options, sort_keys=True, default=str)
        if key in seen:
            continue
        seen.add(key)
        label = f"engine {plan.engine} ({route})"
        assets = _asset_paths(options)
        if not assets and plan.engine in ENGINES_NEEDING_ASSETS:
            what = ENGINES_NEEDING_ASSETS[plan.engine]
            yield fail(
                label, f"no {what} configured", f"set pixels.options of route {route!r} to the {what} file"
            )
            continue
        results = [_check_asset(label, k, p, options, resolve) for k, p in assets.items()]
        yield from results
        if all(r.status == Status.OK for r in results):
            yield _engine_loads(label, plan.engine, options)


def engine_defaults_of(config: Any) -> dict[str, dict[str, Any]]:
    """Options the service gives engines when a rule names none (today: the surrogate's donor bank)."""
    bank = getattr(config, "donor_bank_path", None)
    # donor_bank_path already includes the data dir: absolute, so that check_engines does not resolve it again
    return {"surrogate": {"donor_bank": str(bank.absolute())}} if bank is not None else {}


# ---- secret, disk, ledger ------------------------------------------------------------------------------


def check_secret(path: Path) -> Iterator[Check]:
    from anonymizer.keys import SecretError, load_or_create_secret

    if not path.exists():
        yield fail(
            "secret",
            f"{path} is missing",
            f"existing site: restore it from backup (a new secret changes every pseudonym); first install: "
            f"umask 077; python3 -c 'import secrets; print(secrets.token_hex(32))' > {path}, then back it up",
        )
        return
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        yield fail("secret", f"{path} has mode {mode:o}", f"run: chmod 600 {path}")
        return
    if path.stat().st_uid != os.geteuid():
        yield warn("secret", f"{path} belongs to uid {path.stat().st_uid}", f"run: chown $(id -u) {path}")
    try:
        load_or_create_secret(path, create=False)
    except (SecretError, OSError) as exc:
        yield fail("secret", str(exc), "replace it with 64 hex characters (see README: rotate the secret)")
        return
    yield ok("secret", f"{path} present, mode 600")


def _write_probe(folder: Path, size: int) -> tuple[float, float]:
    """Write ``size`` bytes in 1 MiB chunks, fsync; returns (MB/s, fsync ms)."""
    probe = folder / f".doctor-probe-{os.getpid()}"
    chunk = os.urandom(1 << 20)
    start = time.perf_counter()
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for _ in range(max(1, size // len(chunk))):
            os.write(fd, chunk)
        t_sync = time.perf_counter()
        os.fsync(fd)
        end = time.perf_counter()
    finally:
        os.close(fd)
        probe.unlink(missing_ok=True)
    return size / 1e6 / max(end - start, 1e-9), (end - t_sync) * 1000


def check_spool(
    folder: Path, min_free: int = MIN_FREE_BYTES, probe_bytes: int = PROBE_BYTES
) -> Iterator[Check]:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(folder).free
        speed, fsync_ms = _write_probe(folder, probe_bytes)
    except OSError as exc:
        yield fail(
            "spool",
            f"{folder}: {exc.strerror or exc}",
            f"make {folder} writable by the service user (systemd: ReadWritePaths=; docker: the data volume)",
        )
        return
    gib = free / 1024**3
    if free < min_free:
        yield fail(
            "spool disk",
            f"{gib:.1f} GiB free in {folder}",
            f"free space or move data_dir; need ≥ {min_free / 1024**3:.0f} GiB",
        )
    else:
        yield ok("spool disk", f"{gib:.1f} GiB free in {folder}")
    detail = f"write+fsync {speed:.0f} MB/s, fsync {fsync_ms:.1f} ms ({probe_bytes >> 20} MiB probe)"
    if speed < SLOW_WRITE_MB_S:
        yield warn(
            "spool speed", detail, "put data_dir on a local SSD; network file systems slow every C-STORE"
        )
    else:
        yield ok("spool speed", detail)


def check_ledger(path: Path) -> Iterator[Check]:
    from gateway.core.ledger import LedgerError
    from gateway.core.ledger.sqlite import check_integrity

    if not path.exists():
        yield ok("ledger", f"{path} not created yet (first start creates it)")
        return
    try:
        integrity = check_integrity(path)
    except LedgerError as exc:
        yield fail(
            "ledger", f"{path}: {exc}", "restore the ledger from the last backup (README: back up the ledger)"
        )
        return
    if integrity.problems:
        yield fail(
            "ledger",
            f"{path} integrity_check: {'; '.join(integrity.problems[:3])}",
            "stop the service and restore the ledger from the last backup (README: back up the ledger)",
        )
    else:
        yield ok("ledger", f"{path} integrity ok, journal {integrity.journal_mode}")


# ---- rules and destinations ---------------------------------------------------------------------------


def echo_destination(dest: DicomDestination, calling_ae: str, timeout_s: float = 5.0) -> tuple[bool, str]:
    """C-ECHO (over TLS when configured); (ok, what happened)."""
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    from gateway.core.destinations.dicom import keep_responses_for_the_sender
    from gateway.ops.tls import TlsConfigError, scu_tls_args

    try:
        tls_args = scu_tls_args(dest.tls, dest.host)
    except TlsConfigError as exc:
        return False, str(exc)
    ae = AE(ae_title=calling_ae)
    ae.add_requested_context(Verification)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ae.connection_timeout = timeout_s
    start = time.perf_counter()
    assoc = ae.associate(dest.host, dest.port, ae_title=dest.ae_title, tls_args=tls_args)  # type: ignore[arg-type]
    if not assoc.is_established:
        what = "rejected the association" if assoc.is_rejected else "did not answer"
        return False, f"{dest.host}:{dest.port} {what}"
    keep_responses_for_the_sender(assoc)
    try:
        status = assoc.send_c_echo()
    finally:
        assoc.release()
    code = int(status.Status) if "Status" in status else -1
    elapsed = (time.perf_counter() - start) * 1000
    return code == 0, f"C-ECHO status 0x{code & 0xFFFF:04X} in {elapsed:.0f} ms"


def check_destinations(
    rules: RuleSet,
    calling_ae: str,
    resolve: Callable[[Path], Path],
    timeout_s: float = 5.0,
    config: Any = None,
) -> Iterator[Check]:
    for name, dest in sorted(rules.destinations.items()):
        label = f"destination {name}"
        if isinstance(dest, FolderDestination):
            yield from _check_folder(label, resolve(dest.path))
            continue
        if isinstance(dest, DicomWebDestination):
            yield from _check_dicomweb(label, dest, config)
            continue
        if dest.tls is not None and dest.tls.certificate is not None:
            yield check_certificate(f"{label} certificate", resolve(Path(dest.tls.certificate)))
        ok_, detail = echo_destination(dest, calling_ae, timeout_s)
        tls = " over TLS" if dest.tls else ""
        if ok_:
            yield ok(label, f"{dest.ae_title}@{dest.host}:{dest.port}{tls}: {detail}")
        else:
            yield fail(
                label,
                f"{dest.ae_title}@{dest.host}:{dest.port}{tls}: {detail}",
                f"check host/port/AE title, the firewall, and that the destination knows calling AE "
                f"{calling_ae!r}" + ("; check certificates and CA bundle" if dest.tls else ""),
            )


def _check_dicomweb(label: str, dest: DicomWebDestination, config: Any) -> Iterator[Check]:
    """QIDO-RS with the destination's own TLS and auth: proves URL, certificates and credentials at once."""
    from gateway.core.config import GatewayConfig
    from gateway.core.destinations.dicomweb import DicomWebSender

    if dest.tls is not None and dest.tls.certificate is not None:
        yield check_certificate(f"{label} certificate", dest.tls.certificate)
    ok_, detail = DicomWebSender(dest, config or GatewayConfig()).probe()
    if ok_:
        yield ok(label, f"{dest.url}: {detail}")
    else:
        fix = "check the URL, the firewall, the CA bundle and the secret file (token, password, secret)"
        yield fail(label, f"{dest.url}: {detail}", fix)


def _check_folder(label: str, folder: Path) -> Iterator[Check]:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".doctor-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        yield fail(label, f"{folder}: {exc.strerror or exc}", f"make {folder} writable by the service user")
        return
    yield ok(label, f"folder {folder} writable")


# ---- listeners ---------------------------------------------------------------------------------------


def certificate_days_left(path: Path) -> float:
    """Days until a PEM certificate expires (negative once expired)."""
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return (cert.not_valid_after_utc - datetime.now(UTC)).total_seconds() / 86400


def check_certificate(label: str, path: Path) -> Check:
    try:
        days = certificate_days_left(path)
    except (OSError, ValueError) as exc:
        return fail(label, f"{path}: {exc}", "give the path of a PEM certificate")
    renew = "renew the certificate with the hospital CA (README: configure TLS)"
    if days < 0:
        return fail(label, f"{path} expired {-days:.0f} days ago", renew)
    if days < CERT_WARN_DAYS:
        return warn(label, f"{path} expires in {days:.0f} days", renew)
    return ok(label, f"{path} valid for {days:.0f} more days")


def check_listeners(config: Any, rules: RuleSet) -> Iterator[Check]:
    """The TLS listener's files load into a BCP 195 context; an open allow-list is flagged off loopback."""
    from gateway.ops.tls import TlsConfigError

    if config.tls is not None and config.tls.port == config.port:
        yield fail(
            "tls listener", f"port {config.port} is used by both listeners", "give tls.port its own port"
        )
    elif config.tls is not None:
        try:
            config.tls.context(config.resolve)
        except TlsConfigError as exc:
            yield fail("tls listener", str(exc), "fix the tls: section of the service config")
        else:
            yield check_certificate("tls listener", config.resolve(config.tls.certificate))
    if getattr(config, "stow", None) is not None:
        yield from _check_stow(config)
    sources = len(config.allowed_callers) + len(rules.sources)
    if sources:
        yield ok("allow-list", f"{sources} allowed caller(s)")
    elif config.bind in ("127.0.0.1", "::1"):
        yield ok("allow-list", f"open, but bound to {config.bind} only")
    else:
        yield warn(
            "allow-list",
            f"any caller that reaches {config.bind}:{config.port} may store",
            "list the PACS (AE title + networks) under sources: in the rule file",
        )


def _check_stow(config: Any) -> Iterator[Check]:
    """The STOW-RS receiver: its TLS files load, token files are readable, an open receiver stays local."""
    from gateway.ops.tls import TlsConfigError, TlsSettings, server_context

    stow, where = config.stow, f"{config.stow.bind}:{config.stow.port}"
    if stow.tls is not None:
        t = stow.tls
        ca = config.resolve(t.ca_bundle) if t.ca_bundle else None
        try:
            server_context(TlsSettings(config.resolve(t.certificate), config.resolve(t.private_key), ca))
        except TlsConfigError as exc:
            yield fail("stow listener", str(exc), "fix stow.tls in the service config")
        else:
            yield check_certificate("stow listener", config.resolve(t.certificate))
    for client in stow.clients:
        path = config.resolve(client.token_file) if client.token_file else None
        if path is not None and not (path.is_file() and path.read_text().strip()):
            yield fail(f"stow client {client.name}", f"token file {path} missing or empty", "write the token")
    if stow.clients:
        yield ok("stow allow-list", f"{len(stow.clients)} client(s) on {where}")
    elif stow.bind in ("127.0.0.1", "::1"):
        yield ok("stow allow-list", f"open, but bound to {stow.bind} only")
    else:
        yield warn("stow allow-list", f"any client that reaches {where} may store", "list stow.clients")


# ---- running -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DoctorOptions:
    min_free_bytes: int = MIN_FREE_BYTES
    probe_bytes: int = PROBE_BYTES
    echo_timeout_s: float = 5.0
    network: bool = True


def run_checks(
    config: Any, rules: RuleSet | None = None, options: DoctorOptions | None = None
) -> list[Check]:
    """All checks for a :class:`gateway.core.config.GatewayConfig`; ``rules`` default to the config's."""
    from gateway.core.config import load_rule_set

    options = options or DoctorOptions()
    checks = [*check_python(), *check_packages(), *check_torch(), *check_secret(config.secret_path)]
    checks += [*check_spool(config.spool_dir, options.min_free_bytes, options.probe_bytes)]
    if config.clustered:
        from gateway.cluster.doctor import cluster_checks

        checks += [
            Check(name, Status(status), detail, fix) for name, status, detail, fix in cluster_checks(config)
        ]
    else:
        checks += [*check_ledger(config.ledger_path)]
    if rules is None:
        try:
            rules = load_rule_set(config)
        except Exception as exc:
            where = config.rules_file or "default rules"
            checks.append(
                fail("rules", f"{where}: {exc}", "fix the rule file (vera-gateway rules check FILE)")
            )
            return checks
    checks.append(ok("rules", f"{rules.name} sha256 {rules.sha256[:16]}…"))
    checks += [*check_listeners(config, rules)]
    checks += [*check_engines(rules, config.resolve, engine_defaults_of(config))]
    checks += [*check_ocr(rules)]
    if options.network:
        timeout = options.echo_timeout_s
        checks += [*check_destinations(rules, config.ae_title, config.resolve, timeout, config)]
    return checks


def failed(checks: Iterable[Check]) -> list[Check]:
    return [c for c in checks if c.status == Status.FAIL]


def render(checks: list[Check], as_json: bool = False) -> str:
    if as_json:
        return json.dumps([asdict(c) for c in checks], indent=2)
    from rich.console import Console
    from rich.table import Table

    table = Table(title="vera-gateway doctor")
    for column in ("check", "status", "found", "fix"):
        table.add_column(column, overflow="fold")
    colour = {Status.OK: "green", Status.WARN: "yellow", Status.FAIL: "bold red"}
    for c in checks:
        table.add_row(c.name, f"[{colour[c.status]}]{c.status.value}[/]", c.detail, c.fix)
    console = Console(width=160, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(table)
    bad = failed(checks)
    console.print(f"{len(bad)} problem(s): " + ", ".join(c.name for c in bad) if bad else "all checks passed")
    return console.export_text()


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``doctor`` on the CLI's subparsers; the handler is ``args.func(args) -> exit code``."""
    parser = subparsers.add_parser("doctor", help="check this installation; exit 1 on any problem")
    add_arguments(parser)
    parser.set_defaults(func=run_from_args)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", dest="doctor_config", type=Path, default=None, help="service config YAML")
    parser.add_argument("--data-dir", dest="doctor_data_dir", type=Path, default=None)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--min-free-gb", type=float, default=MIN_FREE_BYTES / 1024**3)
    parser.add_argument("--no-network", action="store_true", help="skip the C-ECHO of destinations")


def run_from_args(args: argparse.Namespace) -> int:
    from gateway.core.config import ConfigError, load_config

    config_path = args.doctor_config or getattr(args, "config", None)
    data_dir = args.doctor_data_dir or getattr(args, "data_dir", None)
    try:
        config = load_config(config_path, data_dir=data_dir)
    except ConfigError as exc:
        print(f"doctor: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    options = DoctorOptions(min_free_bytes=int(args.min_free_gb * 1024**3), network=not args.no_network)
    checks = run_checks(config, options=options)
    print(render(checks, args.json))
    return 1 if failed(checks) else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vera-gateway doctor")
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
