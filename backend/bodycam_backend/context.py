"""Everything one backend process holds, opened from the config: used by the server and the CLI alike."""

from __future__ import annotations

import getpass
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from bodycam.evidence.signer import FileKeySigner
from bodycam.layout import ensure_writable_dir

from .admission import Admission
from .audit import Actor, AuditTrail
from .auth import Authenticator
from .ca import AgencyCA, init_keys, load_backend_signer
from .config import BackendConfig
from .data import ensure_schema
from .db import Database
from .ingest import Ingestor
from .receipts import ReceiptSigner
from .store import EvidenceStore, open_store
from .tus import TusService

log = logging.getLogger("bodycam.backend")


def _session_secret(cfg: BackendConfig, keys: Path) -> bytes:
    if cfg.auth.session_secret:
        return cfg.auth.session_secret.encode()
    path = keys / "session.key"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, secrets.token_hex(32).encode())
        os.fsync(fd)
        os.close(fd)
    return path.read_bytes().strip()


def initialise(cfg: BackendConfig) -> bool:
    """Create the data directory, keys and database if missing; returns True if keys were created."""
    ensure_writable_dir(cfg.data_dir, what="[storage] data_dir",
                        fix="set [storage] data_dir in the backend config to a folder it can write")
    created = init_keys(cfg.data_dir / "keys", agency=cfg.agency.name, ca_days=cfg.agency.ca_days)
    _session_secret(cfg, cfg.data_dir / "keys")
    Database(cfg.data_dir / "backend.sqlite3").close()
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
        initialise(cfg)
        keys = cfg.data_dir / "keys"
        db = Database(cfg.data_dir / "backend.sqlite3")
        ensure_schema(db)
        signer = load_backend_signer(keys)
        store = open_store(cfg) if with_store else None
        trail = AuditTrail(db, signer)
        admission = Admission(
            limit=cfg.admission.max_concurrent_uploads,
            retry_after_s=cfg.admission.retry_after_seconds,
            idle_s=cfg.admission.idle_seconds,
        )
        tus = TusService(
            db=db,
            staging=cfg.data_dir / "uploads",
            admission=admission,
            max_upload_bytes=cfg.limits.max_upload_bytes,
            max_audit_bytes=cfg.limits.max_audit_upload_bytes,
            body_idle_s=cfg.limits.body_idle_seconds,
        )
        auth = Authenticator(
            db,
            max_skew_s=cfg.auth.max_skew_seconds,
            session_secret=_session_secret(cfg, keys),
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
