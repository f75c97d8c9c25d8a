"""Backend configuration: TOML validated on load, every error one line naming the table and key.

Reuses the firmware's table builder (bodycam.config) so both halves reject typos the same way.
Relative paths are taken from the config file's folder.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bodycam.config import _build_table, _opt, read_toml
from bodycam.errors import ConfigError

GIB = 1 << 30
MIB = 1 << 20


@dataclass(frozen=True)
class ServerConfig:
    """Where the HTTP service listens."""

    host: str = _opt("127.0.0.1", help="bind address; put TLS in front (a reverse proxy) beyond loopback")
    port: int = _opt(8080, min=1, max=65535, help="TCP port")
    log_level: str = _opt("info", choices=("debug", "info", "warning", "error"), help="least severe messages logged")
    bench_put: bool = _opt(False, help="route PUT /v1/bench/put, the baseline of 'scripts/bench offload'")
    forwarded_allow_ips: str = _opt(
        "127.0.0.1",
        help="the load balancers whose X-Forwarded-For/-Proto are believed (comma-separated addresses or "
        "networks, e.g. \"10.0.1.2, 10.0.1.3\"): the client address that sign-in throttling and the audit "
        "trail see. Anyone else's such headers are ignored",
    )


@dataclass(frozen=True)
class StorageConfig:
    """Where evidence and the backend's own state are kept."""

    backend: str = _opt(
        "directory", choices=("directory", "s3"), help="directory: write-once files in data_dir; s3: [s3] below"
    )
    data_dir: str = _opt("/var/lib/bodycam-backend", help="SQLite, keys, upload staging, directory store")
    staging_dir: str = _opt(
        "", help="where uploads are staged until verified; empty: data_dir/uploads. Several instances: one "
        "shared filesystem (NFS), so any instance can resume or finalize any upload"
    )
    keys_dir: str = _opt(
        "", help="agency CA, receipt key; empty: data_dir/keys. Several instances: one shared folder (same keys)"
    )
    store_dir: str = _opt(
        "", help="the write-once directory store (backend = directory); empty: data_dir/store"
    )


@dataclass(frozen=True)
class DatabaseConfig:
    """Where the metadata lives: SQLite in data_dir (one instance), or PostgreSQL shared by several."""

    url: str = _opt(
        "",
        help="empty: SQLite file in [storage] data_dir; postgresql://user@host:5432/db: PostgreSQL, which "
        "every instance behind a load balancer must share (password from ~/.pgpass or PGPASSWORD)",
    )
    pool_size: int = _opt(
        20, min=2, max=500,
        help="most PostgreSQL connections one instance holds at once; a finalize holds one for its device's "
        "lock while it stores, so keep it above the finalizes expected at once",
    )


@dataclass(frozen=True)
class S3Config:
    """An S3-compatible store with Object Lock, for [storage] backend = "s3"."""

    endpoint_url: str = _opt("", help="empty: AWS; e.g. http://127.0.0.1:8333 for SeaweedFS")
    region: str = _opt("us-east-1", help="S3 region")
    bucket: str = _opt("bodycam-evidence", help="bucket, created with Object Lock enabled")
    prefix: str = _opt("", help="key prefix inside the bucket, e.g. 'force-a/'")
    access_key_id: str = _opt("", help="empty: boto3's usual credential chain (env, profile, role)")
    secret_access_key: str = _opt("", help="with access_key_id: both or neither")
    retention_days: float = _opt(
        31.0, min=0.0001, max=36500,
        help="Object Lock COMPLIANCE retention every object gets when written: the least time a force keeps all "
        "footage (no longer than the Uncategorised retention, or uncategorised footage outlives it). A "
        "category, extension or case that promises longer raises the lock; nothing can shorten it",
    )
    create_bucket: bool = _opt(False, help="create the bucket with Object Lock enabled if missing")


@dataclass(frozen=True)
class AgencyConfig:
    """The agency whose CA certifies its cameras."""

    name: str = _opt("Example Constabulary", help="O= of the CA and device certificates")
    ca_days: int = _opt(7300, min=1, max=36500, help="validity of the agency CA created by init")


@dataclass(frozen=True)
class EnrolmentConfig:
    """One-time enrolment tokens and the device certificates they buy."""

    token_ttl_hours: float = _opt(72.0, min=0.01, max=24 * 365, help="an unused enrolment token expires")
    certificate_days: int = _opt(1825, min=1, max=36500, help="validity of a device certificate")


@dataclass(frozen=True)
class AuthConfig:
    """Signed device requests and device sessions."""

    max_skew_seconds: int = _opt(300, min=5, max=86400, help="signed-request timestamp window")
    device_session_seconds: int = _opt(900, min=30, max=86400, help="lifetime of a device session")
    session_secret: str = _opt(
        "", help="HMAC secret of device session tokens; empty: one made once and kept in the database, "
        "so every instance on it shares it"
    )


@dataclass(frozen=True)
class LimitsConfig:
    """Size and time limits on what devices send."""

    max_upload_bytes: int = _opt(GIB, min=1, max=1 << 40, help="largest segment media accepted")
    max_audit_upload_bytes: int = _opt(16 * MIB, min=1024, max=GIB, help="largest audit log upload")
    max_json_bytes: int = _opt(4 * MIB, min=4096, max=64 * MIB, help="finalize and enrol bodies")
    upload_expiry_hours: float = _opt(72.0, min=0.01, max=24 * 365, help="incomplete uploads then expire")
    body_idle_seconds: float = _opt(
        30.0, min=0.5, max=3600, help="a request body that sends nothing this long is cut off (408)"
    )
    upload_lease_seconds: float = _opt(
        20.0, min=0.5, max=3600,
        help="a PATCH leases its upload (renewed while it writes); a lease left by a killed instance "
        "frees the upload after this long (423 + Retry-After until then)",
    )


@dataclass(frozen=True)
class AdmissionConfig:
    """Admission control: how many uploads run at once; devices beyond it are told to retry (503)."""

    max_concurrent_uploads: int = _opt(64, min=1, max=100000, help="uploads in progress at once")
    retry_after_seconds: int = _opt(5, min=1, max=3600, help="Retry-After told to a device turned away (503)")
    idle_seconds: float = _opt(
        120.0, min=1, max=86400, help="an upload this long without progress frees its slot"
    )
    instance_timeout_seconds: float = _opt(
        15.0, min=1, max=3600,
        help="an instance that has not said it is alive for this long is taken for dead, and the slots and "
        "upload leases it held are freed (each says so every third of this; hosts' clocks must agree to "
        "well within it)",
    )


@dataclass(frozen=True)
class TrailConfig:
    """The backend audit trail: how often its head is anchored in the write-once store."""

    checkpoint_seconds: float = _opt(
        300.0, min=0, max=86400,
        help="anchor the audit trail's head in the write-once store this often (and at shutdown); 0 = off",
    )


@dataclass(frozen=True)
class ReviewConfig:
    """People signing in to the review pages (docs/review.md): session lifetimes and login throttling."""

    idle_minutes: float = _opt(30.0, min=1, max=24 * 60, help="a session unused this long is signed out")
    absolute_hours: float = _opt(12.0, min=0.1, max=24 * 30, help="a session ends this long after sign-in")
    max_failed_logins: int = _opt(
        5, min=1, max=1000, help="failed sign-ins per account (and 4x that per address) before it waits"
    )
    lockout_minutes: float = _opt(15.0, min=0.1, max=24 * 60, help="window the failed sign-ins are counted in")


@dataclass(frozen=True)
class BackendConfig:
    server: ServerConfig = field(default_factory=ServerConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    s3: S3Config = field(default_factory=S3Config)
    agency: AgencyConfig = field(default_factory=AgencyConfig)
    enrolment: EnrolmentConfig = field(default_factory=EnrolmentConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    admission: AdmissionConfig = field(default_factory=AdmissionConfig)
    trail: TrailConfig = field(default_factory=TrailConfig)
    review: ReviewConfig = field(default_factory=ReviewConfig)
    source_path: str = ""

    @property
    def data_dir(self) -> Path:
        return Path(self.storage.data_dir)

    @property
    def staging_dir(self) -> Path:
        return Path(self.storage.staging_dir) if self.storage.staging_dir else self.data_dir / "uploads"

    @property
    def keys_dir(self) -> Path:
        return Path(self.storage.keys_dir) if self.storage.keys_dir else self.data_dir / "keys"

    @property
    def store_dir(self) -> Path:
        return Path(self.storage.store_dir) if self.storage.store_dir else self.data_dir / "store"


def sections() -> dict[str, type]:
    hints = {f.name: f.type for f in dataclasses.fields(BackendConfig) if f.name != "source_path"}
    return {name: globals()[t] if isinstance(t, str) else t for name, t in hints.items()}


def from_dict(raw: dict[str, Any], *, base_dir: Path | None = None, source_path: str = "") -> BackendConfig:
    secs = sections()
    tables = {}
    for name, value in raw.items():
        if name not in secs:
            raise ConfigError(f"[{name}]: unknown table; known tables are {', '.join(sorted(secs))}")
        tables[name] = _build_table(name, secs[name], value)
    cfg = BackendConfig(**tables, source_path=source_path)
    if base_dir is not None:
        paths = {k: str((base_dir / v).resolve()) for k in ("data_dir", "staging_dir", "keys_dir", "store_dir")
                 if (v := getattr(cfg.storage, k)) and not Path(v).is_absolute()}
        cfg = dataclasses.replace(cfg, storage=dataclasses.replace(cfg.storage, **paths))
    _cross_check(cfg)
    return cfg


def _check_database_url(url: str) -> None:
    if not url:
        return
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres") or not parts.hostname or not parts.path.strip("/"):
        raise ConfigError(
            f"[database] url = {_without_password(url)!r}: use postgresql://user@host:port/database, or \"\" "
            "for SQLite in [storage] data_dir"
        )
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise ConfigError(f"[database] url: port of {parts.netloc.rsplit('@', 1)[-1]!r} is not a number") from None


def _without_password(url: str) -> str:
    head, sep, tail = url.partition("@")
    if sep and ":" in head.split("://", 1)[-1]:
        return head.rsplit(":", 1)[0] + ":***@" + tail
    return url


def _check_forwarded_allow_ips(value: str) -> None:
    for item in (i.strip() for i in value.split(",")):
        if item == "*":
            continue
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ConfigError(
                f"[server] forwarded_allow_ips: {item!r} is not an IP address or network; list the load "
                "balancers' addresses, e.g. \"10.0.1.2, 10.0.1.3\" or \"10.0.1.0/28\""
            ) from None


def _cross_check(cfg: BackendConfig) -> None:
    _check_database_url(cfg.database.url)
    _check_forwarded_allow_ips(cfg.server.forwarded_allow_ips)
    if cfg.storage.backend == "s3":
        if not cfg.s3.bucket:
            raise ConfigError("[s3] bucket: required when [storage] backend = 's3'")
        if bool(cfg.s3.access_key_id) != bool(cfg.s3.secret_access_key):
            raise ConfigError("[s3] access_key_id / secret_access_key: give both or neither")
        if cfg.s3.prefix and (cfg.s3.prefix.startswith("/") or not cfg.s3.prefix.endswith("/")):
            raise ConfigError(
                f"[s3] prefix = {cfg.s3.prefix!r}: must not start with '/' and must end with '/'"
            )


def load(path: str | Path) -> BackendConfig:
    """Read and validate a backend config file; every failure is one ConfigError line."""
    p = Path(path)
    raw = read_toml(p)
    try:
        return from_dict(raw, base_dir=p.parent.resolve(), source_path=str(p))
    except ConfigError as e:
        raise ConfigError(f"{p}: {e}") from None
