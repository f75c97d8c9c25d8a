"""Everything one backend process holds, opened from the config: used by the server and the CLI alike."""

from __future__ import annotations

import getpass
import logging
import os
import secrets
import socket
from dataclasses import dataclass

from bodycam.evidence.signer import FileKeySigner
from bodycam.layout import ensure_writable_dir

from .admission import Admission
from .audit import Actor, AuditTrail
from .auth import Authenticator
from .ca import AgencyCA, init_keys, load_backend_signer
from .config import BackendConfig
from .data import Database, now_ns, open_database, settings
from .ingest import Ingestor
from .receipts import ReceiptSigner
from .store import EvidenceStore, open_store
from .tus import TusService

log = logging.getLogger("bodycam.backend")


def _session_secret(cfg: BackendConfig, db: Database) -> bytes:
    """``[auth] session_secret``, else the one made once and kept in the database, so a session token
    issued by one instance is honoured by every other. A backend that kept it in a file before (keys
    dir, session.key) carries it over: sessions issued before the upgrade stay valid."""
    if cfg.auth.session_secret:
        return cfg.auth.session_secret.encode()
    old = cfg.keys_dir / "session.key"
    seed = old.read_text().strip() if old.exists() else secrets.token_hex(32)
    return settings.get_or_create(db, "session_secret", seed, now_ns()).encode()


def _prepare(cfg: BackendConfig) -> tuple[Database, bool]:
    """The data directory, the database (migrated) and the keys, created if missing; returns the open
    database and whether keys were created. Instances starting at once on one database and one keys
    folder take turns creating the keys (a lock in the database)."""
    ensure_writable_dir(cfg.data_dir, what="[storage] data_dir",
                        fix="set [storage] data_dir in the backend config to a folder it can write")
    db = open_database(cfg)
    try:
        with db.lock("bodycam:init-keys"):
            created = init_keys(cfg.keys_dir, agency=cfg.agency.name, ca_days=cfg.agency.ca_days)
    except BaseException:
        db.close()
        raise
    return db, created


def initialise(cfg: BackendConfig) -> bool:
    """Create the data directory and keys if missing and bring the database to the newest schema
    (migrations); returns True if keys were created."""
    db, created = _prepare(cfg)
    try:
        _session_secret(cfg, db)
    finally:
        db.close()
    return created


@dataclass
class Backend:
    cfg: BackendConfig
    db: Database
    store: EvidenceStore
    ca: AgencyCA
    signer: FileKeySigner
    trail: AuditTrail
    auth: Authenticator
    admission: Admission
    tus: TusService
    ingest: Ingestor

    @classmethod
    def open(cls, cfg: BackendConfig, *, with_store: bool = True) -> Backend:
        db, _ = _prepare(cfg)
        keys = cfg.keys_dir
        instance = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        signer = load_backend_signer(keys)
        store = open_store(cfg) if with_store else None
        trail = AuditTrail(db, signer)
        admission = Admission(
            db=db,
            instance=instance,
            limit=cfg.admission.max_concurrent_uploads,
            retry_after_s=cfg.admission.retry_after_seconds,
            idle_s=cfg.admission.idle_seconds,
            instance_timeout_s=cfg.admission.instance_timeout_seconds,
        )
        tus = TusService(
            db=db,
            staging=cfg.staging_dir,
            admission=admission,
            max_upload_bytes=cfg.limits.max_upload_bytes,
            max_audit_bytes=cfg.limits.max_audit_upload_bytes,
            body_idle_s=cfg.limits.body_idle_seconds,
            lease_s=cfg.limits.upload_lease_seconds,
            instance=instance,
        )
        auth = Authenticator(
            db,
            max_skew_s=cfg.auth.max_skew_seconds,
            session_secret=_session_secret(cfg, db),
            session_s=cfg.auth.device_session_seconds,
        )
        receipts = ReceiptSigner(signer, cfg.storage.backend)
        ingest = Ingestor(db=db, store=store, tus=tus, receipts=receipts, trail=trail)  # type: ignore[arg-type]
        return cls(
            cfg,
            db,
            store,
            AgencyCA.load(keys, cfg.agency.name),
            signer,
            trail,
            auth,  # type: ignore[arg-type]
            admission,
            tus,
            ingest,
        )

    @property
    def backend_public_pem(self) -> str:
        return self.signer.public_key_pem().decode()

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
        self.db.close()


def cli_actor() -> Actor:
    """Admin commands run on the server host: the OS user is who did it."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return Actor(f"cli:{user}", "admin")
