"""Evidence validation shared by everyone who judges it: the device's `bodycam verify`, the backend's
ingest, and any court's verifier that imports this module. One reading of the formats in
docs/format.md, so the three cannot disagree about what a well-formed manifest or audit line is.

Pure functions on bytes and parsed documents: no files, no keys, no policy. Callers decide what a
problem means (a verifier reports it; the backend rejects and flags the upload).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from .audit import AUDIT_FORMAT
from .chain import GENESIS
from .manifest import FORMAT

HEX64 = re.compile(r"^[0-9a-f]{64}$")
MAX_MANIFEST_BYTES = 1 << 20


class EvidenceFormatError(ValueError):
    """Bytes that are not a well-formed manifest or audit line; the message says which and why."""


def _loads(data: str | bytes) -> Any:
    try:
        return json.loads(data)
    except RecursionError:  # nested deeper than the parser can go: not evidence we wrote
        raise ValueError("nested too deeply") from None


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# --- segment manifests --------------------------------------------------------------------------

def manifest_shape_problems(doc: dict[str, Any]) -> list[str]:
    """Field names whose value a verifier cannot use (a device bug or a forgery attempt)."""
    bad = []
    if not _is_int(doc.get("sequence")) or doc["sequence"] < 1:
        bad.append("sequence")
    if not isinstance(doc.get("device_serial"), str) or not doc["device_serial"]:
        bad.append("device_serial")
    if not isinstance(doc.get("key_id"), str):
        bad.append("key_id")
    prev = doc.get("previous_manifest_sha256")
    if not isinstance(prev, str) or not HEX64.match(prev):
        bad.append("previous_manifest_sha256")
    media = doc.get("media")
    if not isinstance(media, dict):
        bad.append("media")
    else:
        if not isinstance(media.get("file"), str):
            bad.append("media.file")
        if not isinstance(media.get("sha256"), str) or not HEX64.match(media["sha256"]):
            bad.append("media.sha256")
        if not _is_int(media.get("size")) or media["size"] < 0:
            bad.append("media.size")
    if not _is_int(doc.get("frame_count")) or doc["frame_count"] < 0:
        bad.append("frame_count")
    for k in ("first_frame", "last_frame"):
        v = doc.get(k)
        if v is not None and not (isinstance(v, dict) and _is_int(v.get("utc_ns")) and _is_int(v.get("pts"))):
            bad.append(k)
    audio = doc.get("audio")
    if audio is not None:
        if not isinstance(audio, dict):
            bad.append("audio")
        else:
            for k in ("sample_rate", "channels", "sample_count"):
                if not _is_int(audio.get(k)) or audio[k] < 0:
                    bad.append(f"audio.{k}")
            for k in ("first_sample", "last_sample", "sound_starts"):
                v = audio.get(k)
                if v is not None and not (isinstance(v, dict) and _is_int(v.get("utc_ns"))):
                    bad.append(f"audio.{k}")
            if not isinstance(audio.get("pre_event_audio"), bool):
                bad.append("audio.pre_event_audio")
    end = doc.get("end_reason")
    if end is not None and not isinstance(end, str):
        bad.append("end_reason")
    return bad


def shape_error(doc: dict[str, Any]) -> str | None:
    bad = manifest_shape_problems(doc)
    return f"manifest field(s) missing or invalid: {', '.join(bad)}" if bad else None


def parse_manifest(raw: bytes, *, check_shape: bool = True) -> dict[str, Any]:
    """A signed segment manifest's document, or EvidenceFormatError saying what is wrong with it.

    ``check_shape=False`` stops after the format, for a verifier that checks the signature before it
    reports on fields (a badly shaped but validly signed manifest is a device bug, not a forgery).
    """
    if not raw:
        raise EvidenceFormatError("manifest is empty")
    if len(raw) > MAX_MANIFEST_BYTES:
        raise EvidenceFormatError("manifest is over 1 MiB: too large to be a manifest")
    try:
        doc = _loads(raw)
    except ValueError:
        raise EvidenceFormatError("manifest is not valid JSON (damaged)") from None
    if not isinstance(doc, dict) or "format" not in doc:
        raise EvidenceFormatError('not a bodycam manifest (no "format" field): damaged or not ours')
    if doc["format"] != FORMAT:
        raise EvidenceFormatError(f"manifest format {str(doc['format'])[:40]!r} is not {FORMAT!r}: "
                                  "made by other firmware, or damaged")
    if check_shape and (problem := shape_error(doc)):
        raise EvidenceFormatError(problem)
    return doc


def media_problem(doc: dict[str, Any], *, sha256: str, size: int) -> str | None:
    """How media of ``size`` bytes hashing to ``sha256`` differs from what the manifest signed, if it does."""
    want_size, want_sha = doc["media"]["size"], doc["media"]["sha256"]
    if size != want_size:
        return f"media is {size} bytes, the signed manifest says {want_size}"
    if sha256 != want_sha:
        return f"media SHA-256 {sha256[:16]}... is not the signed {want_sha[:16]}... (altered)"
    return None


def chain_links(previous_manifest: bytes | None, doc: dict[str, Any]) -> bool:
    """Whether ``doc`` links to the manifest bytes of the sequence before it (None: it is sequence 1)."""
    want = GENESIS if previous_manifest is None else hashlib.sha256(previous_manifest).hexdigest()
    return doc["previous_manifest_sha256"] == want


# --- audit log lines ----------------------------------------------------------------------------

@dataclass(frozen=True)
class AuditLine:
    """One parsed line of a device audit log: ``{"entry": "<signed JSON text>", "sig": "<base64 DER>"}``."""

    text: str
    signature: bytes
    signature_b64: str
    entry: dict[str, Any]

    @property
    def seq(self) -> int:
        return self.entry["seq"]

    @property
    def prev(self) -> str:
        return self.entry["prev"]

    @property
    def key_id(self) -> str:
        return self.entry["key_id"]

    @property
    def sha256(self) -> str:
        """What the next entry's ``prev`` must be."""
        return hashlib.sha256(self.text.encode()).hexdigest()

    def follows(self, before: AuditLine | None) -> bool:
        """Whether this entry is the next link after ``before`` (None: the log's first entry, seq 1)."""
        if before is None:
            return self.seq == 1 and self.prev == GENESIS
        return self.seq == before.seq + 1 and self.prev == before.sha256


def parse_audit_line(line: bytes | str) -> AuditLine:
    """An audit line, or EvidenceFormatError if it is not a ``bodycam.audit/1`` entry."""
    damaged = EvidenceFormatError(f"not a {AUDIT_FORMAT} entry (damaged)")
    try:
        outer = _loads(line)
        text, sig_b64 = outer["entry"], outer["sig"]
        if not isinstance(text, str) or not isinstance(sig_b64, str):
            raise damaged
        entry = _loads(text)
        signature = base64.b64decode(sig_b64, validate=True)
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise damaged from None
    if not isinstance(entry, dict) or entry.get("format") != AUDIT_FORMAT:
        raise damaged
    seq, prev, key_id = entry.get("seq"), entry.get("prev"), entry.get("key_id")
    if not _is_int(seq) or seq < 1 or not isinstance(prev, str) or not HEX64.match(prev) \
            or not isinstance(key_id, str):
        raise damaged
    return AuditLine(text, signature, sig_b64, entry)
