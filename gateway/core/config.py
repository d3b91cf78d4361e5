"""Service configuration: one frozen, validated model built from an optional YAML file plus CLI overrides.

Every path the service writes lives under ``data_dir`` unless the file names it explicitly. Errors name the
file and the offending field, so an admin can fix them without reading code.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from gateway.console.settings import ConsoleConfig
from gateway.ops.tls import TlsListenerConfig

if TYPE_CHECKING:  # dicom_rules pulls in pydicom: loaded when rules are, not for `status`
    from dicom_rules import RuleSet


class ConfigError(ValueError):
    """The service configuration is invalid; the message names the file and the field."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _valid_cidrs(value: tuple[str, ...]) -> tuple[str, ...]:
    for net in value:
        ipaddress.ip_network(net, strict=False)
    return value


Cidrs = Annotated[tuple[str, ...], AfterValidator(_valid_cidrs)]


class CallerRule(_Frozen):
    """One allowed calling AE title, optionally restricted to IP networks (CIDR)."""

    ae_title: str = Field(min_length=1, max_length=16)
    networks: Cidrs = ()


class ForwardSettings(_Frozen):
    """Forwarder retry policy: exponential back-off with jitter, circuit breaker, give-up → quarantine."""

    backoff_initial_s: float = Field(2.0, gt=0)
    backoff_max_s: float = Field(300.0, gt=0)
    jitter: float = Field(0.2, ge=0, le=1)  # ± fraction of the delay
    give_up_s: float = Field(24 * 3600.0, gt=0)
    breaker_failures: int = Field(5, ge=1)  # consecutive failures that open the breaker
    breaker_reset_s: float = Field(30.0, gt=0)  # open → half-open after this long
    batch_size: int = Field(50, ge=1)
    connect_timeout_s: float = Field(10.0, gt=0)
    dimse_timeout_s: float = Field(60.0, gt=0)


class ObjectStoreSettings(_Frozen):
    """Spool, outbox and quarantine in one S3 bucket (any S3-compatible service) instead of local folders.

    Credentials come from the usual AWS sources (environment, profile, instance role), never from this file.
    """

    bucket: str = Field(min_length=3, max_length=63)
    endpoint_url: str | None = None  # None: AWS; e.g. http://s3.site.internal:9000
    region: str = "us-east-1"
    prefix: str = ""  # e.g. "gateway-a/": several gateways can share a bucket
    server_side_encryption: str | None = "AES256"  # the objects are PHI; None only for stores without SSE
    connect_timeout_s: float = Field(3.0, gt=0)  # short: a receiver answers 0xA700 rather than hang
    read_timeout_s: float = Field(30.0, gt=0)
    max_attempts: int = Field(3, ge=1)  # botocore "standard" retries, first try included
    # Orphans: objects no ledger row references (a PUT whose commit failed, a receiver killed in between).
    orphan_scan_interval_s: float = Field(600.0, gt=0)  # receivers list the bucket this often
    orphan_grace_s: float = Field(3600.0, gt=0)  # younger objects may still be committing: not counted
    orphan_delete_after_s: float | None = Field(7 * 86400.0, gt=0)  # None: count, never delete

    @model_validator(mode="after")
    def _delete_after_grace(self) -> ObjectStoreSettings:
        if self.orphan_delete_after_s is not None and self.orphan_delete_after_s < self.orphan_grace_s:
            raise ValueError("orphan_delete_after_s must not be shorter than orphan_grace_s")
        return self

    @field_validator("prefix")
    @classmethod
    def _prefix_is_a_folder(cls, value: str) -> str:
        if value and not value.endswith("/"):
            raise ValueError("prefix must end with '/'")
        return value


class StowClient(_Frozen):
    """One allowed STOW-RS client. ``name`` is recorded as its calling AE title (routes may match it); it
    proves who it is by a bearer token (read from ``token_file``) or a client certificate's subject CN."""

    name: str = Field(min_length=1, max_length=16, pattern=r"^[A-Za-z0-9._-]+$")
    token_file: Path | None = None
    certificate_cn: str | None = Field(None, min_length=1)
    networks: Cidrs = ()  # it may call only from these; empty = any address

    @model_validator(mode="after")
    def _one_credential(self) -> StowClient:
        if (self.token_file is None) == (self.certificate_cn is None):
            raise ValueError(f"client {self.name}: give exactly one of token_file or certificate_cn")
        return self


class StowTls(_Frozen):
    """HTTPS for the STOW-RS receiver; with ``ca_bundle`` presented client certificates are verified."""

    certificate: Path
    private_key: Path
    ca_bundle: Path | None = None
    require_peer_certificate: bool = False


class StowSettings(_Frozen):
    """The ``stow:`` section: a STOW-RS receiver (PS3.18 §10.5) feeding the same intake as the SCP."""

    bind: str = "127.0.0.1"
    port: int = Field(8104, ge=0, le=65535)
    tls: StowTls | None = None
    clients: tuple[StowClient, ...] = ()  # empty: any client (the default bind is loopback only)
    max_request_bytes: int = Field(1 << 30, ge=1)  # 413 beyond this (declared or streamed)
    max_instance_bytes: int = Field(256 << 20, ge=1)  # one part; bounds the memory of a request
    max_concurrent_requests: int = Field(8, ge=1)  # 503 beyond this
    # a slow body may not hold one of those slots: 408 once the body takes longer than body_timeout_s, or
    # once it falls behind min_body_bytes_per_s (averaged from the request's start, after body_grace_s)
    body_timeout_s: float = Field(900.0, gt=0)
    min_body_bytes_per_s: int = Field(10 * 1024, ge=0)  # 0: no rate floor, only the timeout
    body_grace_s: float = Field(10.0, ge=0)
    header_timeout_s: float = Field(10.0, gt=0)  # a connection's request line and headers; then it is closed

    @field_validator("bind")
    @classmethod
    def _valid_ip(cls, value: str) -> str:
        ipaddress.ip_address(value)
        return value

    @model_validator(mode="after")
    def _cn_needs_tls(self) -> StowSettings:
        if any(c.certificate_cn for c in self.clients) and (self.tls is None or self.tls.ca_bundle is None):
            raise ValueError("clients with certificate_cn need tls with a ca_bundle that signs them")
        return self


class GatewayConfig(_Frozen):
    """Everything `vera-gateway serve` needs. Paths resolve against ``data_dir``."""

    data_dir: Path = Path("var")
    ae_title: str = Field("VERA_GW", min_length=1, max_length=16)
    bind: str = "127.0.0.1"
    port: int = Field(11112, ge=0, le=65535)
    allowed_callers: tuple[CallerRule, ...] = ()  # empty: any caller (the default bind is loopback only)
    max_associations: int = Field(10, ge=1)
    max_associations_per_source: int = Field(10, ge=1)  # per calling IP address (gateway/ops/policy.py)
    check_called_ae: bool = False  # refuse associations whose called AE title is not ae_title
    tls: TlsListenerConfig | None = None  # a DICOM TLS listener beside the plain one (gateway/ops/tls.py)
    max_pdu: int = Field(262144, ge=0)  # 0 = unlimited
    acse_timeout_s: float = Field(30.0, gt=0)
    dimse_timeout_s: float = Field(60.0, gt=0)
    network_timeout_s: float = Field(60.0, gt=0)  # idle association; also: a started PDU must finish in it
    admission_timeout_s: float = Field(10.0, gt=0)  # connect → complete A-ASSOCIATE-RQ (core/admission.py)
    max_pending_connections: int = Field(64, ge=1)  # connections without a complete RQ yet, all sources
    max_pending_per_source: int = Field(8, ge=1)  # ... per source address (the oldest is closed first)
    max_request_pdu: int = Field(65536, ge=4096)  # A-ASSOCIATE-RQ and other non-data PDUs
    max_dataset_bytes: int = Field(512 * 2**20, ge=4096)  # one C-STORE's dataset; above: drained, 0xA701
    max_inflight_bytes: int = Field(1024 * 2**20, ge=4096)  # received data held by all associations
    # "lean": our one-thread-per-association storage SCP (gateway/core/lean_scp.py); "pynetdicom": its AE
    receive_path: Literal["lean", "pynetdicom"] = "lean"
    # processes that serve the plain listener's associations (gateway/core/receivers.py); 1: in the main one
    receive_processes: int = Field(1, ge=1, le=64)
    quiet_period_s: float = Field(30.0, ge=0)
    max_wait_s: float = Field(600.0, gt=0)
    workers: int = Field(2, ge=0)  # 0 = run jobs in the scheduler thread (debugging only)
    job_timeout_s: float = Field(900.0, gt=0)  # a job running longer means a hung worker: restart, retry
    retention_s: float | None = Field(None, gt=0)  # delete spool+outbox files this long after forwarding
    rules_file: Path | None = None  # None: dicom_rules.default_rules()
    engine: str = "surrogate"  # pixel engine of routes whose rule names none (surrogate | vera | ...)
    secret_file: Path | None = None  # None: <data_dir>/secret.key
    donor_bank: Path | None = None  # surrogate donors; None: $VERA_DONOR_BANK or <data_dir>/donors.npz
    metrics_port: int | None = Field(9108, ge=0, le=65535)  # None: no HTTP endpoint
    metrics_bind: str = "127.0.0.1"
    poll_interval_s: float = Field(0.2, gt=0)
    forward: ForwardSettings = ForwardSettings()
    # cluster mode (README "Running on several machines"): None keeps the embedded defaults
    ledger: str | None = None  # None: SQLite under data_dir; postgresql://user@host/db: shared ledger
    object_store: ObjectStoreSettings | None = None  # None: local folders under data_dir
    max_job_attempts: int = Field(3, ge=1)  # cluster: a job failed (or crashed) this often: quarantined
    stall_after_s: float = Field(30.0, gt=0)  # cluster: a worker silent this long is presumed dead
    worker_heartbeat_s: float = Field(10.0, gt=0)  # cluster: how often a worker says it is alive
    work_queue: str = Field("gpu", min_length=1)  # cluster: the queue study jobs go to
    forward_lease_s: float = Field(300.0, gt=0)  # cluster: a forwarder owns the outputs it took this long

    @field_validator("ledger")
    @classmethod
    def _postgresql_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("ledger must be a postgresql:// URL (omit it for the embedded SQLite ledger)")
        return value

    @property
    def clustered(self) -> bool:
        return self.ledger is not None

    stow: StowSettings | None = None  # a STOW-RS receiver beside the SCP (gateway/core/stow.py)
    console: ConsoleConfig | None = None  # the admin's web console (gateway/console/), off when absent

    @model_validator(mode="after")
    def _receivers_need_the_lean_path(self) -> GatewayConfig:
        # a cluster node (ledger: postgresql://...) receives in one process: a cluster scales by nodes
        if self.receive_processes > 1 and (self.receive_path != "lean" or self.clustered):
            raise ValueError("receive_processes > 1 is for a single node on receive_path lean")
        return self

    @model_validator(mode="after")
    def _console_tls_off_loopback(self) -> GatewayConfig:
        console = self.console
        if console is not None and not console.on_loopback and console.tls is None and self.tls is None:
            raise ValueError("console.bind is not loopback: give console.tls (or a tls: listener to share)")
        return self

    @field_validator("bind", "metrics_bind")
    @classmethod
    def _valid_ip(cls, value: str) -> str:
        ipaddress.ip_address(value)
        return value

    def _under(self, path: Path) -> Path:
        return path if path.is_absolute() else self.data_dir / path

    @property
    def spool_dir(self) -> Path:
        return self.data_dir / "spool"

    @property
    def outbox_dir(self) -> Path:
        return self.data_dir / "outbox"

    @property
    def quarantine_dir(self) -> Path:
        return self.data_dir / "quarantine"

    @property
    def ledger_path(self) -> Path:
        return self.data_dir / "ledger.sqlite3"

    @property
    def secret_path(self) -> Path:
        return self._under(self.secret_file) if self.secret_file else self.data_dir / "secret.key"

    @property
    def donor_bank_path(self) -> Path:
        if self.donor_bank is not None:
            return self._under(self.donor_bank)
        env = os.environ.get("VERA_DONOR_BANK")
        return Path(env) if env else self.data_dir / "donors.npz"

    def resolve(self, path: Path) -> Path:
        """Resolve a relative path (e.g. a folder destination) against the data dir."""
        return self._under(path)


def load_config(path: Path | None = None, **overrides: Any) -> GatewayConfig:
    """Build the config from an optional YAML file; keyword overrides (CLI flags, None ignored) win."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: top level must be a mapping")
        data.update(loaded)
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return GatewayConfig.model_validate(data)
    except ValidationError as exc:
        where = str(path) if path else "<command line>"
        lines = [f"{where}: {'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()]
        raise ConfigError("\n".join(lines)) from exc


def load_rule_set(config: GatewayConfig) -> RuleSet:
    """The RuleSet named by the config, or the shipped defaults."""
    import dicom_rules

    if config.rules_file is None:
        return dicom_rules.default_rules(config.engine)
    return dicom_rules.load_rules(config.resolve(config.rules_file), default_engine=config.engine)
