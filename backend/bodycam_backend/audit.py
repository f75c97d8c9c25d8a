"""The backend's audit trail: who ingested, viewed, downloaded, enrolled, revoked, exported what.

Same shape as the device log (bodycam.evidence.audit): each entry is compact sorted JSON text naming
the SHA-256 of the previous entry's text, signed by the backend key; rows are append-only (database
triggers refuse UPDATE/DELETE). An entry is written *before* the data it concerns is returned, so a
view that was served is always on the record.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from bodycam.clock import iso_utc
from bodycam.evidence.chain import GENESIS
from bodycam.evidence.signer import Signer, load_public_key, verify_signature

from .data import Database, now_ns
from .data import trail as trail_rows

TRAIL_FORMAT = "bodycam.backend-audit/1"


@dataclass(frozen=True)
class Actor:
    """Who did it: ``person:NAME`` (role admin/reviewer), ``device:SERIAL`` or ``cli:USER``."""

    name: str
    role: str


class AuditTrail:
    def __init__(self, db: Database, signer: Signer) -> None:
        self.db = db
        self.signer = signer

    def record(self, actor: Actor, action: str, target: str, *, conn: Any = None, **data: Any) -> int:
        """Append one entry and return its seq, in one IMMEDIATE transaction, or inside the caller's
        (``conn``) so the entry commits together with what it records."""
        if conn is not None:
            return self._append(conn, actor, action, target, data)
        with self.db.transaction() as c:
            return self._append(c, actor, action, target, data)

    def _append(self, c: Any, actor: Actor, action: str, target: str, data: dict[str, Any]) -> int:
        row = trail_rows.lock_head(c)  # appends are serialised across instances
        seq, prev = (int(row[0]) + 1, str(row[1])) if row else (1, GENESIS)
        t = now_ns()
        entry = {
            "format": TRAIL_FORMAT,
            "seq": seq,
            "prev": prev,
            "utc": iso_utc(t),
            "utc_ns": t,
            "actor": actor.name,
            "role": actor.role,
            "action": action,
            "target": target,
            "key_id": self.signer.key_id,
            "data": data,
        }
        text = json.dumps(entry, separators=(",", ":"), sort_keys=True, default=str)
        sig = base64.b64encode(self.signer.sign(text.encode())).decode()
        trail_rows.append(c, seq=seq, entry=text, sig=sig, sha256=hashlib.sha256(text.encode()).hexdigest(),
                          target=target)
        return seq

    def entries(self, *, after: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        rows = trail_rows.entries(self.db, after=after, limit=limit)
        return [{"entry": r["entry"], "sig": r["sig"]} for r in rows]

    def entries_for(self, targets: list[str], prefixes: list[str]) -> list[dict[str, Any]]:
        """Entries whose target is one of ``targets`` or starts with one of ``prefixes``."""
        rows = trail_rows.entries_for(self.db, targets, prefixes)
        return [{"entry": r["entry"], "sig": r["sig"]} for r in rows]


@dataclass
class TrailCheck:
    ok: bool = True
    entries: int = 0
    errors: list[str] = field(default_factory=list)


def verify_lines(lines: list[dict[str, Any]], public_key_pem: bytes, *, complete: bool = True) -> TrailCheck:
    """Check signatures, and for the whole trail (``complete``) seq continuity from 1 and every prev link;
    an excerpt (an export) is checked for signatures and for the links between consecutive entries."""
    pub = load_public_key(public_key_pem)
    out = TrailCheck()
    last_seq, last_hash = 0, GENESIS
    for n, line in enumerate(lines, 1):
        try:
            text = line["entry"]
            entry = json.loads(text)
            sig = base64.b64decode(line["sig"], validate=True)
            seq, prev = entry["seq"], entry["prev"]
        except (KeyError, TypeError, ValueError):
            out.errors.append(f"entry {n}: not a {TRAIL_FORMAT} line")
            continue
        if entry.get("format") != TRAIL_FORMAT:
            out.errors.append(f"entry {n}: format {entry.get('format')!r}")
        if not verify_signature(pub, sig, text.encode()):
            out.errors.append(f"seq {seq}: signature invalid (entry altered)")
        if seq != last_seq + 1 and not complete:
            pass
        elif seq != last_seq + 1:
            out.errors.append(f"seq {seq} follows seq {last_seq} (entries missing or reordered)")
        elif prev != last_hash:
            out.errors.append(f"seq {seq}: prev is not the SHA-256 of seq {last_seq} (chain broken)")
        last_seq, last_hash = seq, hashlib.sha256(text.encode()).hexdigest()
        out.entries += 1
    out.ok = not out.errors
    return out
