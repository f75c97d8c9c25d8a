"""Checks evidence the way a court expert would: signatures, media hashes, the chain, the audit log.

Only signed bytes vouch for anything. ``state/chain.json`` is unsigned, so it can only add
suspicion (a deleted tail), never clear it. Keys found beside the evidence prove the files are
unaltered and complete as a set; only a key given with ``--key`` (the enrolled certificate)
proves which camera made them, so explicit keys replace discovered ones. Format: docs/format.md.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .clock import iso_utc
from .digest import sha256_file
from .errors import BodycamError
from .evidence.chain import GENESIS
from .evidence.manifest import TIME_BASE, segment_stem
from .evidence.signer import key_id_of, verify_signature
from .evidence.validate import (
    MAX_MANIFEST_BYTES,
    EvidenceFormatError,
    parse_audit_line,
    parse_manifest,
    shape_error,
)

_SEG = re.compile(r"^seg-(\d{10})\.(json|sig|mp4|mp4\.partial|journal)$")
_SEALING_EVENTS = ("segment_sealed", "segment_recovered")
AUDIO_END_SLACK_S = 0.25  # sound and pictures of a segment end this close (one AAC frame + a video frame + margin)
_OFFLOADED_EVENT = "segment_offloaded"  # the backend's verified receipt was kept, then the files freed
UNRECOVERED = ("unrecovered segment (a power cut left it open): run 'bodycam recover --config FILE' "
               "(or start the daemon) to seal it, then verify again")


class VerifyInputError(BodycamError, ValueError):
    """A path given to verify does not exist or is not something verify understands (exit 2)."""


def format_sequences(seqs: Iterable[int]) -> str:
    """Exact numbers, runs of three or more as ``a-b``: "5, 6" or "5-9, 12"."""
    out: list[str] = []
    nums = sorted(set(seqs))
    i = 0
    while i < len(nums):
        j = i
        while j + 1 < len(nums) and nums[j + 1] == nums[j] + 1:
            j += 1
        if j - i >= 2:
            out.append(f"{nums[i]}-{nums[j]}")
        else:
            out.extend(str(n) for n in nums[i:j + 1])
        i = j + 1
    return ", ".join(out)


def _seqs_phrase(seqs: Iterable[int]) -> str:
    seqs = sorted(set(seqs))
    return f"sequence{'s' if len(seqs) > 1 else ''} {format_sequences(seqs)}"




# --- keys -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class VerifyKey:
    """A public key to check signatures with, and where it came from (for the trust note)."""

    key_id: str
    public_key: ec.EllipticCurvePublicKey
    source: Path
    subject: str | None = None  # set when the key came from an X.509 certificate
    given: bool = False  # passed by the user, rather than found beside the evidence


def load_keys(path: Path, *, given: bool) -> list[VerifyKey]:
    """EC public keys from a PEM public key or PEM X.509 certificate(s) (a bundle may hold a chain)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise VerifyInputError(f"{path}: no such file or directory") from None
    except OSError as e:
        raise VerifyInputError(f"{path}: cannot read ({e.strerror})") from None
    if b"PRIVATE KEY-----" in data:
        raise VerifyInputError(f"{path}: is a private key; give the public key (device.pub.pem) "
                               "or the device certificate instead")
    keys: list[VerifyKey] = []
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            for cert in x509.load_pem_x509_certificates(data):
                pub = cert.public_key()
                if isinstance(pub, ec.EllipticCurvePublicKey):
                    keys.append(VerifyKey(key_id_of(pub), pub, path, cert.subject.rfc4514_string(), given))
        elif b"-----BEGIN PUBLIC KEY-----" in data:
            pub = serialization.load_pem_public_key(data)
            if isinstance(pub, ec.EllipticCurvePublicKey):
                keys.append(VerifyKey(key_id_of(pub), pub, path, None, given))
        else:
            raise ValueError("no PEM block")
    except ValueError:
        raise VerifyInputError(f"{path}: not a PEM public key or X.509 certificate") from None
    if not keys:
        raise VerifyInputError(f"{path}: holds no EC public key (device keys are ECDSA P-256)")
    return keys


# --- report ---------------------------------------------------------------------------------------

@dataclass
class DeviceSummary:
    """What one camera's segments in the set add up to."""

    serial: str
    segments: int = 0
    recordings: int = 0
    frames: int = 0
    duration_seconds: float = 0.0
    first_utc: str | None = None
    last_utc: str | None = None
    first_sequence: int | None = None
    last_sequence: int | None = None
    missing_sequences: list[int] = field(default_factory=list)
    recovered_segments: int = 0
    markers: int = 0
    key_ids: list[str] = field(default_factory=list)


@dataclass
class AuditSummary:
    path: str
    entries: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    first_utc: str | None = None
    last_utc: str | None = None
    boots: int = 0
    events: dict[str, int] = field(default_factory=dict)


@dataclass
class VerifyReport:
    """Errors fail verification; warnings need a human look but prove nothing wrong; notes explain."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    devices: dict[str, DeviceSummary] = field(default_factory=dict)
    audit: list[AuditSummary] = field(default_factory=list)
    keys: list[dict[str, Any]] = field(default_factory=list)
    decoded: bool = False

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "errors": self.errors, "warnings": self.warnings, "notes": self.notes,
                "decoded": self.decoded, "keys": self.keys,
                "devices": {k: asdict(v) for k, v in self.devices.items()},
                "audit": [asdict(a) for a in self.audit]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def render_text(self) -> str:
        counts = [f"{len(self.errors)} error{'s' * (len(self.errors) != 1)}"] if self.errors else []
        if self.warnings:
            counts.append(f"{len(self.warnings)} warning{'s' * (len(self.warnings) != 1)}")
        if self.decoded:
            counts.append("frames decoded")
        verdict = "FAILED" if self.errors else "OK"
        lines = [f"verify: {verdict}" + (f" ({', '.join(counts)})" if counts else "")]
        for d in self.devices.values():
            span = (f"sequences {d.first_sequence}-{d.last_sequence}" if d.first_sequence is not None
                    else "no segments")
            if d.missing_sequences:
                span += f", missing {format_sequences(d.missing_sequences)}"
            subject = {k["key_id"]: k["subject"] for k in self.keys}
            keys = ", ".join(k[:16] + (f" ({subject[k]})" if subject.get(k) else "") for k in d.key_ids)
            lines.append(f"device {d.serial}: {d.segments} segments ({span}), {d.recordings} recordings, "
                         f"{d.frames} frames, {d.duration_seconds:.1f} s")
            if d.first_utc:
                lines.append(f"  {d.first_utc} .. {d.last_utc}; key {keys}"
                             + (f"; {d.recovered_segments} sealed from disk after a power cut or a full card"
                                if d.recovered_segments else ""))
        for a in self.audit:
            span = f"seq {a.first_seq}-{a.last_seq}" if a.first_seq is not None else "empty"
            lines.append(f"audit {a.path}: {a.entries} entries ({span}), {a.boots} boot(s)")
        lines += [f"error: {m}" for m in self.errors]
        lines += [f"warning: {m}" for m in self.warnings]
        lines += [f"note: {m}" for m in self.notes]
        return "\n".join(lines)


# --- inputs ---------------------------------------------------------------------------------------

@dataclass
class _Scope:
    """One directory of segments, and whether the set given for it claims to be complete."""

    directory: Path
    scanned: bool  # whole directory (completeness checked) vs hand-picked files
    chain_state: Path | None = None
    data_dir: bool = False  # segments/ of a device data directory: one device, with its own audit log
    serials: set[str] = field(default_factory=set)


@dataclass
class _Segment:
    name: str
    path: Path
    raw: bytes
    doc: dict[str, Any]
    scope: _Scope

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()

    @property
    def seq(self) -> int:
        return self.doc["sequence"]

    @property
    def serial(self) -> str:
        return self.doc["device_serial"]


class _Verifier:
    def __init__(self, *, decode: bool) -> None:
        self.r = VerifyReport(decoded=decode)
        self.decode = decode
        self.manifests: dict[Path, _Scope] = {}
        self.orphans: dict[Path, _Scope] = {}  # media / signatures seen without their manifest
        self.leftovers: set[Path] = set()
        self.audit_logs: list[Path] = []
        self.chain_files: list[tuple[Path, _Scope | None]] = []
        self.given_keys: list[VerifyKey] = []
        self.found_keys: list[Path] = []
        self.keys: dict[str, VerifyKey] = {}
        self.pending: set[int] = set()
        self.segments: list[_Segment] = []
        self.sealed_in_audit: list[tuple[str, int, int, str | None, str]] = []  # log, line, seq, sha, key
        self.offloaded: dict[str, set[int]] = defaultdict(set)  # key_id -> sequences (signed entries)
        self._offloaded_cache: dict[tuple[str | None, int], set[int]] = {}
        self.missing: dict[str, set[int]] = defaultdict(set)
        self.used_keys: set[str] = set()

    # -- collecting --

    def add_path(self, path: Path) -> None:
        if not path.exists():
            raise VerifyInputError(f"{path}: no such file or directory")
        if path.is_dir():
            if (path / "segments").is_dir() or (path / "audit" / "audit.log").is_file():
                self._add_data_dir(path)
            else:
                self._scan(path, _Scope(path, scanned=True))
                self._find_keys(path)
                if (path / "audit.log").is_file():
                    self.audit_logs.append(path / "audit.log")
            return
        self._add_file(path)

    def _add_data_dir(self, root: Path) -> None:
        scope = _Scope(root / "segments", scanned=True, data_dir=True)
        chain = root / "state" / "chain.json"
        scope.chain_state = chain if chain.is_file() else None
        if (root / "segments").is_dir():
            self._scan(root / "segments", scope)
        if scope.chain_state:
            self.chain_files.append((chain, scope))
        self._find_keys(root / "device")
        if (root / "audit" / "audit.log").is_file():
            self.audit_logs.append(root / "audit" / "audit.log")

    def _scan(self, directory: Path, scope: _Scope) -> None:
        for p in sorted(directory.iterdir()):
            m = _SEG.match(p.name)
            if not m or not p.is_file():
                continue
            kind = m.group(2)
            if kind == "json":
                self.manifests.setdefault(p.resolve(), scope)
            elif kind in ("mp4", "sig"):
                self.orphans.setdefault(p.resolve(), scope)
            else:
                self.leftovers.add(p.resolve())

    def _find_keys(self, directory: Path) -> None:
        """Public keys and certificates in ``directory``, to check with when none are given. Never the
        device's private key (key.pem) or its CSR: only what a verifier may hold."""
        for p in sorted(directory.glob("*.pem")):
            if p.is_file() and p.name != "key.pem" and not p.name.endswith(".csr.pem") \
                    and p not in self.found_keys:
                self.found_keys.append(p)

    def _keys_beside_file(self, path: Path) -> None:
        """A single evidence file finds its key where its directory would: in a data dir
        (segments/../device/, audit/../device/) or, in an export, beside it; so `verify seg-N.json` and
        `verify DIR` agree, with the same "taken from beside the evidence" note."""
        parent = path.parent
        if parent.name in ("segments", "audit", "state") and (parent.parent / "device").is_dir():
            self._find_keys(parent.parent / "device")
        else:
            self._find_keys(parent)

    def _add_file(self, path: Path) -> None:
        name = path.name
        scope = _Scope(path.parent, scanned=False)
        if name.endswith((".mp4", ".sig", ".json", ".mp4.partial", ".journal", ".log")):
            self._keys_beside_file(path.resolve())
        if name.endswith((".mp4.partial", ".journal")):
            self.leftovers.add(path.resolve())
        elif name.endswith((".mp4", ".sig")):
            manifest = path.with_name(path.name.removesuffix(".mp4").removesuffix(".sig") + ".json")
            if manifest.is_file():
                self.manifests.setdefault(manifest.resolve(), scope)
            self.orphans.setdefault(path.resolve(), scope)
        elif name.endswith(".json"):
            try:
                with open(path, "rb") as f:
                    doc = json.loads(f.read(MAX_MANIFEST_BYTES))
            except (OSError, ValueError):
                doc = None
            if isinstance(doc, dict) and "next_sequence" in doc and "format" not in doc:
                self.chain_files.append((path, None))
            else:
                self.manifests.setdefault(path.resolve(), scope)
        elif name.endswith((".pem", ".crt")):
            self.given_keys += load_keys(path, given=True)
        elif name.endswith(".log"):
            self.audit_logs.append(path)
        else:
            raise VerifyInputError(f"{path}: not a segment, manifest, key, chain state or audit log")

    def _load_keys(self) -> None:
        if self.given_keys:
            for k in self.given_keys:
                self.keys.setdefault(k.key_id, k)
            if self.found_keys:
                self.r.notes.append("keys found beside the evidence ignored, because keys were given: "
                                    + ", ".join(p.name for p in self.found_keys))
        else:
            for p in self.found_keys:
                try:
                    for k in load_keys(p, given=False):
                        self.keys.setdefault(k.key_id, k)
                except VerifyInputError as e:
                    if "private key" not in str(e):
                        self.r.warnings.append(f"{e} (ignored)")
        self.r.keys = [{"key_id": k.key_id, "source": str(k.source), "subject": k.subject, "given": k.given}
                       for k in self.keys.values()]

    # -- running --

    def run(self, paths: list[Path], public_keys: list[Path]) -> VerifyReport:
        for k in public_keys:
            self.given_keys += load_keys(k, given=True)
        for p in paths:
            self.add_path(p)
        self._load_keys()
        self._leftovers()
        logs: dict[Path, Path] = {}
        for p in self.audit_logs:
            logs.setdefault(p.resolve(), p)
        for log in logs.values():   # first: its segment_offloaded entries explain files that are gone
            self._audit(log)
        self._partially_freed()
        for path, scope in self.manifests.items():
            seg = self._load_manifest(path, scope)
            if seg:
                self.segments.append(seg)
        if not self.keys and (self.segments or self.audit_logs):
            self.r.errors.append("no public key to check signatures with: pass --key device.pub.pem "
                                 "(or the device certificate)")
        for seg in self.segments:
            self._check_media(seg)
        self._orphans()
        by_device: dict[str, list[_Segment]] = defaultdict(list)
        for seg in self.segments:
            by_device[seg.serial].append(seg)
            seg.scope.serials.add(seg.serial)
        chains = {serial: self._chain(serial, segs) for serial, segs in sorted(by_device.items())}
        for path, scope in self.chain_files:
            self._chain_state(path, scope, chains)
        self._cross_check(chains)
        self._offload_note()
        self._summaries(by_device)
        self._trust_note()
        if not (self.manifests or self.orphans or self.leftovers or self.audit_logs):
            self.r.errors.append("nothing to verify: no segments or audit log found in "
                                 + ", ".join(str(p) for p in paths))
        return self.r

    def _leftovers(self) -> None:
        stems: dict[str, Path] = {}
        for p in sorted(self.leftovers):
            stem = p.name.split(".", 1)[0]
            if (p.parent / f"{stem}.mp4").exists():
                if p.name.endswith(".journal"):
                    self.r.notes.append(f"{p.name}: left over from a sealed segment; the daemon removes it")
                continue
            stems.setdefault(stem, p)
        for stem, p in stems.items():
            self.pending.add(int(stem[4:]))
            if _daemon_running(p.parent.parent):
                self.r.notes.append(f"{stem}: being recorded now by the running daemon (checked once sealed)")
            else:
                self.r.errors.append(f"{stem}: {UNRECOVERED}")

    def _offloaded_of(self, serial: str | None) -> set[int]:
        """Sequences a trusted audit entry says the backend acknowledged (so their absence is expected).

        An entry counts for a device if its key signed that device's segments here, or, when the set
        holds at most one device, if its key signed no segment here at all (everything offloaded).
        """
        cache_key = (serial, len(self.segments))
        if cache_key not in self._offloaded_cache:
            owner = {s.doc["key_id"]: s.serial for s in self.segments}
            serials = {s.serial for s in self.segments}
            out: set[int] = set()
            for key_id, seqs in self.offloaded.items():
                o = owner.get(key_id)
                if (serial is not None and o == serial) or (o is None and len(serials) <= 1):
                    out |= seqs
            self._offloaded_cache[cache_key] = out
        return self._offloaded_cache[cache_key]

    def _partially_freed(self) -> None:
        """Files left when a power cut interrupted freeing an offloaded segment (media goes first): the
        backend holds the verified copy and the device finishes freeing at its next dock."""
        offloaded = self._offloaded_of(None)
        groups: dict[tuple[Path, int], list[Path]] = defaultdict(list)
        for f, scope in [*self.manifests.items(), *self.orphans.items()]:
            m = _SEG.match(f.name)
            if scope.data_dir and m and int(m.group(1)) in offloaded:
                groups[(f.parent, int(m.group(1)))].append(f)
        for (directory, seq), files in sorted(groups.items()):
            stem = segment_stem(seq)
            if all((directory / f"{stem}.{ext}").exists() for ext in ("mp4", "json", "sig")):
                continue                # kept whole (keep_local): verified like any other segment
            for f in files:
                self.manifests.pop(f, None)
                self.orphans.pop(f, None)
            self.r.notes.append(f"{stem}: offloaded (audit log), freeing was interrupted: "
                                f"{', '.join(sorted(f.name for f in files))} left; the device removes them")

    def _offload_note(self) -> None:
        here = {s.seq for s in self.segments}
        gone = set(self._offloaded_of(None))
        for serial in {s.serial for s in self.segments}:
            gone |= self._offloaded_of(serial)
        gone -= here
        if gone:
            self.r.notes.append(f"{_seqs_phrase(gone)} offloaded to the evidence backend (signed "
                                f"{_OFFLOADED_EVENT} entries in the audit log), so not here; verify the "
                                "backend's export for them")

    def _load_manifest(self, path: Path, scope: _Scope) -> _Segment | None:
        name = path.name
        try:
            if path.stat().st_size > MAX_MANIFEST_BYTES:
                self.r.errors.append(f"{name}: too large to be a manifest")
                return None
            raw = path.read_bytes()
        except OSError as e:
            self.r.errors.append(f"{name}: cannot read ({e.strerror})")
            return None
        try:
            doc = parse_manifest(raw, check_shape=False)
        except EvidenceFormatError as e:
            self.r.errors.append(f"{name}: {e}")
            return None
        self._check_signature(name, path.with_suffix(".sig"), raw, doc.get("key_id"), what="manifest")
        if problem := shape_error(doc):
            self.r.errors.append(f"{name}: {problem}")
            return None
        seg = _Segment(name, path, raw, doc, scope)
        m = _SEG.match(name)
        if m and int(m.group(1)) != seg.seq:
            self.r.errors.append(f"{name}: holds the manifest of sequence {seg.seq}, not {int(m.group(1))} "
                                 "(manifest files swapped or renamed)")
        expected = f"{segment_stem(seg.seq)}.mp4"
        if doc["media"]["file"] != expected:
            self.r.errors.append(f"{name}: names media {doc['media']['file']!r}, but sequence {seg.seq} "
                                 f"is {expected} (manifest swapped or forged)")
        return seg

    def _check_signature(self, label: str, sig_path: Path, data: bytes, key_id: Any, *, what: str) -> bool:
        try:
            sig = sig_path.read_bytes()
        except FileNotFoundError:
            self.r.errors.append(f"{sig_path.name}: missing (no signature for {label})")
            return False
        except OSError as e:
            self.r.errors.append(f"{sig_path.name}: cannot read ({e.strerror})")
            return False
        return self._verify(label, sig, data, key_id, what=what)

    def _verify(self, label: str, sig: bytes, data: bytes, key_id: Any, *, what: str) -> bool:
        if not self.keys:
            return False  # reported once for the whole run
        key = self.keys.get(key_id) if isinstance(key_id, str) else None
        if key is None:
            self.r.errors.append(f"{label}: signed by unknown key {key_id}")
            return False
        if not verify_signature(key.public_key, sig, data):
            self.r.errors.append(f"{label}: signature invalid ({what} altered)")
            return False
        self.used_keys.add(key.key_id)
        return True

    def _check_media(self, seg: _Segment) -> None:
        media_doc = seg.doc["media"]
        expected = f"{segment_stem(seg.seq)}.mp4"
        named = media_doc["file"]
        media = seg.path.parent / (named if _SEG.match(named) and named.endswith(".mp4") else expected)
        self.orphans.pop(media.resolve(), None)
        self.orphans.pop(seg.path.with_suffix(".sig").resolve(), None)
        if not media.exists():
            if media.with_name(media.name + ".partial").exists():
                self.pending.add(seg.seq)  # sealed manifest, rename not done: recovery re-seals it
            else:
                self.r.errors.append(f"{media.name}: missing (named by {seg.name})")
            return
        size = media.stat().st_size
        if size != media_doc["size"]:
            self.r.errors.append(f"{media.name}: size {size} bytes, manifest says {media_doc['size']} "
                                 "(media truncated or altered)")
            return
        actual = sha256_file(media)
        if actual != media_doc["sha256"]:
            other = next((s for s in self.segments if s.doc["media"]["sha256"] == actual), None)
            hint = f"; it is the media of sequence {other.seq} (media files swapped)" if other else ""
            self.r.errors.append(f"{media.name}: SHA-256 mismatch (media altered){hint}")
            return
        if self.decode:
            self._decode(media, seg)

    def _decode(self, media: Path, seg: _Segment) -> None:
        """Deep check: the hash proves the bytes; this proves the bytes are the video the manifest says."""
        import av  # only the deep check needs FFmpeg

        want = seg.doc["frame_count"]
        if want == 0:
            return
        count, first_key, last_pts = 0, False, None
        try:
            with av.open(str(media)) as container:
                for frame in container.decode(video=0):
                    if count == 0:
                        first_key = bool(frame.key_frame)
                    count += 1
                    last_pts = frame.pts
        except (av.error.FFmpegError, IndexError) as e:
            self.r.errors.append(f"{media.name}: cannot be decoded ({e})")
            return
        if count != want:
            self.r.errors.append(f"{media.name}: decoded {count} frames, manifest says {want}")
        if not first_key:
            self.r.errors.append(f"{media.name}: first frame is not a keyframe")
        last = seg.doc.get("last_frame") or {}
        if last_pts is not None and "pts" in last and last_pts != last["pts"]:
            self.r.errors.append(f"{media.name}: last frame pts {last_pts}, manifest says {last['pts']}")
        if last_pts is not None:
            fps = seg.doc["video"].get("fps") or 30
            self._decode_audio(media, seg, video_end=last_pts / TIME_BASE + 1 / fps)

    def _decode_audio(self, media: Path, seg: _Segment, *, video_end: float) -> None:
        """The sound track decodes, holds the samples the manifest says, and ends with the pictures."""
        import av

        audio = seg.doc.get("audio")
        if not isinstance(audio, dict):
            return
        want = audio.get("sample_count", 0)
        samples, first_pts, end = 0, None, None
        try:
            with av.open(str(media)) as container:
                if not container.streams.audio:
                    self.r.errors.append(f"{media.name}: no sound track, the manifest describes one")
                    return
                for frame in container.decode(audio=0):
                    if first_pts is None:
                        first_pts = frame.pts
                    samples += frame.samples
                    end = float((frame.pts + frame.samples) * frame.time_base)
        except (av.error.FFmpegError, IndexError) as e:
            self.r.errors.append(f"{media.name}: sound cannot be decoded ({e})")
            return
        if samples != want:
            self.r.errors.append(f"{media.name}: decoded {samples} sound samples, manifest says {want}")
        first = audio.get("first_sample") or {}
        if first_pts is not None and "pts" in first and first_pts != first["pts"]:
            self.r.errors.append(f"{media.name}: first sound pts {first_pts}, manifest says {first['pts']}")
        trigger = seg.doc.get("trigger") or {}
        if (audio.get("pre_event_audio") is False and first.get("monotonic_ns") is not None
                and trigger.get("monotonic_ns") is not None and trigger.get("reason") == "button"
                and first["monotonic_ns"] < trigger["monotonic_ns"]):
            self.r.errors.append(f"{media.name}: sound starts before the trigger, but the manifest says "
                                 "pre_event_audio is false")
        # Sound runs to the last picture: a gap of more than this means one track lost its tail.
        slack = 1.0 if seg.doc.get("recovered") else AUDIO_END_SLACK_S
        if end is not None and abs(end - video_end) > slack:
            self.r.errors.append(f"{media.name}: sound ends at {end:.3f} s, pictures at {video_end:.3f} s "
                                 f"(more than {slack:g} s apart)")

    def _orphans(self) -> None:
        by_manifest: dict[Path, list[str]] = defaultdict(list)
        for p in sorted(self.orphans):
            by_manifest[p.with_name(p.name.split(".")[0] + ".json")].append(p.name)
        for manifest, names in by_manifest.items():
            if manifest.exists():
                continue  # its manifest is unreadable or names other media: reported with the manifest
            self.r.errors.append(f"{', '.join(names)}: no manifest ({manifest.name} missing), so "
                                 f"{'they' if len(names) > 1 else 'it'} cannot be verified")

    # -- the chain --

    def _chain(self, serial: str, segs: list[_Segment]) -> dict[int, _Segment]:
        """Links between consecutive sequences; gaps are missing segments unless the device skipped them."""
        by_seq: dict[int, _Segment] = {}
        for seg in sorted(segs, key=lambda s: (s.seq, s.name != f"{segment_stem(s.seq)}.json")):
            have = by_seq.get(seg.seq)
            if have is None:
                by_seq[seg.seq] = seg
            elif have.raw != seg.raw:
                self.r.errors.append(f"device {serial}: two different manifests claim sequence {seg.seq}: "
                                     f"{have.name}, {seg.name}")
        seqs = sorted(by_seq)
        complete = all(s.scope.scanned for s in segs)
        offloaded = self._offloaded_of(serial)
        first = by_seq[seqs[0]]
        if first.seq == 1:
            if first.doc["previous_manifest_sha256"] != GENESIS:
                self.r.errors.append(f"{first.name}: sequence 1 must link to the genesis value (64 zeros); "
                                     "chain broken")
        else:
            self.r.notes.append(f"device {serial}: the set starts at sequence {first.seq} (earlier segments "
                                f"are not here, e.g. offloaded); the link from {first.name} to sequence "
                                f"{first.seq - 1} cannot be checked")
        for a, b in zip(seqs, seqs[1:], strict=False):
            sa, sb = by_seq[a], by_seq[b]
            links = sb.doc["previous_manifest_sha256"] == sa.sha256
            if b == a + 1:
                if not links:
                    self.r.errors.append(f"{sb.name}: chain broken: previous_manifest_sha256 is not the "
                                         f"SHA-256 of {sa.name} (a manifest was replaced)")
                continue
            gap = [s for s in range(a + 1, b) if s not in self.pending and s not in offloaded]
            if links:
                self.r.warnings.append(f"device {serial}: {_seqs_phrase(range(a + 1, b))} never sealed "
                                       f"({sb.name} links directly to {sa.name}, so nothing was removed)")
            elif not gap:
                continue
            elif complete:
                self.missing[serial].update(gap)
                self.r.errors.append(f"device {serial}: missing {_seqs_phrase(gap)} "
                                     f"(between {sa.name} and {sb.name})")
            else:
                self.r.notes.append(f"device {serial}: {_seqs_phrase(gap)} not given (files picked by hand), "
                                    f"so the link from {sb.name} back to {sa.name} is not checked")
        last = by_seq[seqs[-1]]
        follows = last.seq + 1
        if (last.doc.get("end_reason", "") is None and complete and follows not in self.pending
                and follows not in offloaded):
            self.r.warnings.append(f"device {serial}: {last.name} says its recording continues, but no sequence "
                                   f"{follows} follows it: possible deletion of the newest segment(s) (or a "
                                   "power cut just as the next one opened); check the device's audit log")
        return by_seq

    def _chain_state(self, path: Path, scope: _Scope | None, chains: dict[str, dict[int, _Segment]]) -> None:
        """The unsigned chain head: only adds suspicion (a deleted tail), never vouches for anything."""
        label = f"{path.parent.name}/{path.name}"
        try:
            head = json.loads(path.read_bytes())
            last, last_sha, nxt = head["last_sequence"], head["last_manifest_sha256"], head["next_sequence"]
            if not all(isinstance(v, int) for v in (last, nxt)):
                raise TypeError
        except (OSError, ValueError, KeyError, TypeError):
            self.r.warnings.append(f"{label}: unreadable, so a deleted tail cannot be detected from it")
            return
        serials = scope.serials if scope else set(chains)
        if len(serials) > 1:
            self.r.notes.append(f"{label}: segments of several devices, so it is not applied")
            return
        serial = next(iter(serials), None)
        by_seq = chains.get(serial, {}) if serial else {}
        top = max(by_seq, default=0)
        if last > top:
            offloaded = self._offloaded_of(serial)
            tail = [s for s in range(top + 1, last + 1) if s not in self.pending and s not in offloaded]
            if tail and by_seq:
                self.missing[serial].update(tail)  # type: ignore[index]
                self.r.errors.append(f"device {serial}: missing {_seqs_phrase(tail)} at the end "
                                     f"({label} says sequence {last} was sealed)")
            elif tail:
                self.r.warnings.append(f"no segments here, but {label} says sequences up to {last} were "
                                       "sealed: if they were not offloaded, they are missing")
        elif last < top:
            self.r.notes.append(f"{label} is behind the segments (last_sequence {last}, segments up to "
                                f"{top}); the daemon catches it up at its next start")
        if last in by_seq and last_sha != by_seq[last].sha256:
            self.r.errors.append(f"{label}: head hash does not match {by_seq[last].name} "
                                 "(manifest replaced?)")
        reserved = [s for s in range(max(last, top) + 1, nxt) if s not in self.pending]
        if reserved:
            self.r.warnings.append(f"{label}: {_seqs_phrase(reserved)} reserved, but no file for it "
                                   "exists (deleted before sealing?)")

    # -- the audit log --

    def _audit(self, path: Path) -> None:
        label = path.name
        summary = AuditSummary(str(path))
        self.r.audit.append(summary)
        try:
            data = path.read_bytes()
        except OSError as e:
            self.r.errors.append(f"{label}: cannot read ({e.strerror})")
            return
        body, newline, torn = data.rpartition(b"\n")
        lines = body.split(b"\n") if newline else []
        if torn:
            self.r.warnings.append(f"{label} line {len(lines) + 1}: incomplete last line (torn by a power "
                                   "cut); ignored, the device cuts it at its next start")
        events: Counter[str] = Counter()
        boots: set[str] = set()
        last_seq: int | None = None
        last_hash, last_line, last_ok = GENESIS, 0, True
        for n, line in enumerate(lines, 1):
            try:
                parsed = parse_audit_line(line)
            except EvidenceFormatError as e:
                self.r.errors.append(f"{label} line {n}: {e}")
                last_ok = False
                continue
            text, sig, entry, seq, prev = parsed.text, parsed.signature, parsed.entry, parsed.seq, parsed.prev
            ok = self._verify(f"{label} line {n}", sig, text.encode(), entry.get("key_id"), what="entry")
            if last_seq is None:
                if seq == 1 and prev != GENESIS:
                    self.r.errors.append(f"{label} line {n}: entry seq 1 must link to the genesis value")
                elif seq != 1:
                    self.r.notes.append(f"{label}: starts at entry seq {seq} (earlier entries rotated "
                                        f"away?); its link to seq {seq - 1} cannot be checked")
            elif seq == last_seq + 1:
                if prev != last_hash and last_ok and ok:
                    self.r.errors.append(f"{label} line {n}: chain broken (prev is not the SHA-256 of line "
                                         f"{last_line}'s entry)")
            elif seq > last_seq + 1:
                gone = range(last_seq + 1, seq)
                what = f"entry seq {gone[0]}" if len(gone) == 1 else f"entries seq {format_sequences(gone)}"
                self.r.errors.append(f"{label}: {what} missing (between line {last_line} and {n})")
            else:
                self.r.errors.append(f"{label} line {n}: seq {seq} after seq {last_seq} "
                                     "(entries reordered or duplicated)")
            last_seq, last_hash, last_line, last_ok = seq, parsed.sha256, n, ok
            summary.entries += 1
            summary.first_seq = seq if summary.first_seq is None else summary.first_seq
            summary.last_seq = seq
            summary.first_utc = summary.first_utc or entry.get("utc")
            summary.last_utc = entry.get("utc")
            events[str(entry.get("event"))] += 1
            boots.add(str(entry.get("boot_id")))
            data_ = entry.get("data") if isinstance(entry.get("data"), dict) else {}
            if ok and entry.get("event") == _OFFLOADED_EVENT and isinstance(data_.get("sequence"), int):
                self.offloaded[entry["key_id"]].add(data_["sequence"])
            if ok and entry.get("event") in _SEALING_EVENTS and isinstance(data_.get("sequence"), int):
                self.sealed_in_audit.append((label, n, data_["sequence"], data_.get("media_sha256"),
                                             entry["key_id"]))
        summary.events = dict(events)
        summary.boots = len(boots)

    def _cross_check(self, chains: dict[str, dict[int, _Segment]]) -> None:
        """Signed "segment_sealed" entries against the segments: catches a deleted tail even if
        state/chain.json was edited to match."""
        serial_of_key = {s.doc["key_id"]: s.serial for s in self.segments}
        absent: dict[str, list[tuple[int, str, int]]] = defaultdict(list)
        offloaded: Counter[str] = Counter()
        for log, line, seq, sha, key_id in self.sealed_in_audit:
            serial = serial_of_key.get(key_id) or (next(iter(chains)) if len(chains) == 1 else None)
            by_seq = chains.get(serial, {}) if serial else {}
            if seq in by_seq:
                want = by_seq[seq].doc["media"]["sha256"]
                if sha is not None and sha != want:
                    self.r.errors.append(f"{log} line {line}: sequence {seq} was sealed with media SHA-256 "
                                         f"{sha[:16]}..., {by_seq[seq].name} says {want[:16]}...")
            elif seq in self.pending or seq in self._offloaded_of(serial):
                continue
            elif by_seq and seq < min(by_seq):
                offloaded[log] += 1
            else:
                absent[serial or "?"].append((seq, log, line))
        for log, n in offloaded.items():
            self.r.notes.append(f"{log}: {n} sealed segment(s) before the first one here (offloaded earlier)")
        for serial, items in absent.items():
            if serial not in chains:
                self.r.warnings.append(f"{items[0][1]} records {_seqs_phrase(s for s, _, _ in items)} "
                                       "sealed, but no segment of that device is here: if not offloaded, "
                                       "they are missing")
                continue
            complete = all(s.scope.scanned for s in chains[serial].values())
            new = sorted({s for s, _, _ in items} - self.missing[serial])
            if not new:
                continue
            lines = ", ".join(str(ln) for s, _, ln in items if s in new)
            if complete:
                self.missing[serial].update(new)
                self.r.errors.append(f"device {serial}: missing {_seqs_phrase(new)} ({items[0][1]} lines "
                                     f"{lines} record them sealed)")
            else:
                self.r.notes.append(f"device {serial}: {_seqs_phrase(new)} sealed per {items[0][1]} "
                                    "but not given (files picked by hand)")

    # -- summary --

    def _summaries(self, by_device: dict[str, list[_Segment]]) -> None:
        for serial, segs in sorted(by_device.items()):
            d = DeviceSummary(serial)
            seen: dict[int, _Segment] = {}
            for s in segs:
                seen.setdefault(s.seq, s)
            firsts, lasts = [], []
            for s in seen.values():
                doc = s.doc
                d.frames += doc["frame_count"]
                d.recovered_segments += bool(doc.get("recovered"))
                d.markers += len(doc.get("markers") or [])
                ff, lf = doc.get("first_frame"), doc.get("last_frame")
                if doc["frame_count"] and ff and lf:
                    fps = (doc.get("video") or {}).get("fps") or 0
                    d.duration_seconds += lf["pts"] / TIME_BASE + (1 / fps if fps else 0)
                    firsts.append(ff["utc_ns"])
                    lasts.append(lf["utc_ns"])
            d.segments = len(seen)
            d.recordings = len({s.doc.get("recording_id") for s in seen.values()})
            d.duration_seconds = round(d.duration_seconds, 3)
            d.first_sequence, d.last_sequence = min(seen), max(seen)
            d.first_utc = iso_utc(min(firsts)) if firsts else None
            d.last_utc = iso_utc(max(lasts)) if lasts else None
            d.key_ids = sorted({s.doc["key_id"] for s in seen.values()})
            d.missing_sequences = sorted(self.missing[serial])
            self.r.devices[serial] = d

    def _trust_note(self) -> None:
        found = sorted({str(self.keys[k].source) for k in self.used_keys if not self.keys[k].given})
        if found:
            self.r.notes.append(f"key taken from beside the evidence ({', '.join(found)}): this proves the "
                                "files are unaltered and complete, not which camera signed them; pass --key "
                                "with the device's enrolled certificate for that")


def _daemon_running(data_dir: Path) -> bool:
    """Whether a live daemon owns ``data_dir`` (its control socket answers): its open segment is not a
    leftover of a power cut."""
    sock_path = data_dir / "run" / "control.sock"
    if not sock_path.exists():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        try:
            s.connect(str(sock_path))
        except OSError:
            return False
    return True


def verify_paths(paths: list[Path], *, public_keys: list[Path] | None = None,
                 decode: bool = False) -> VerifyReport:
    """Verify a data directory, a directory of segments, or single files; raises VerifyInputError for
    paths that do not exist or cannot be understood (a usage error, not a verification failure)."""
    return _Verifier(decode=decode).run([Path(p) for p in paths], [Path(k) for k in public_keys or []])
