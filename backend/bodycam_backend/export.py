"""Evidence bundle for one recording: everything a court or defence expert needs to check it offline,
without trusting the backend (docs/backend-api.md section 10).

The top level is exactly what `bodycam verify DIR` understands (segment triples, the device
certificate as ``*.pem``, the device's ``audit.log`` cut to the recording); the backend's own
statements (receipts, its audit trail entries, CA and receipt key) sit in ``backend/``, which the
verifier does not scan, so they cannot stand in for the device's key.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from bodycam.clock import iso_utc

from . import pinned
from .audit import Actor
from .context import Backend
from .data import device_audit, devices, segments
from .errors import BackendError
from .store import segment_key

SEALING = ("segment_sealed", "segment_recovered")


def _audit_slice(b: Backend, serial: str, lo: int, hi: int) -> list[Any]:
    """The device's entries from just after the last segment sealed before ``lo`` up to just before
    the first sealed after ``hi``: the recording's own story, with no seal of a segment not exported."""
    rows = device_audit.of_device(b.db, serial)

    def sealed_seq(r: Any) -> int | None:
        if r["event"] not in SEALING:
            return None
        s = json.loads(r["entry"]).get("data", {}).get("sequence")
        return s if isinstance(s, int) else None

    start = 0
    for i, r in enumerate(rows):
        s = sealed_seq(r)
        if s is not None and s < lo:
            start = i + 1
    out = []
    for r in rows[start:]:
        s = sealed_seq(r)
        if s is not None and not lo <= s <= hi:
            break
        out.append(r)
    return out


def _write(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def export_recording(b: Backend, recording_id: str, out: Path, *, actor: Actor) -> int:
    from .api import recording_detail  # the same summary the API serves
    from .errors import ApiError

    try:
        detail = recording_detail(b, recording_id)
    except ApiError as e:
        raise BackendError(e.message) from None
    if out.exists() and any(out.iterdir()):
        raise BackendError(f"{out} is not empty; export into a new directory")
    serial = detail["device_serial"]
    seqs = [s["sequence"] for s in detail["segments"]]
    b.trail.record(actor, "export", f"recording:{recording_id}", out=str(out), segments=len(seqs))
    (out / "backend").mkdir(parents=True, exist_ok=True)
    for seq in seqs:
        for ext in ("mp4", "json", "sig"):
            _write(out / f"seg-{seq:010d}.{ext}",
                   pinned.read(b, segment_key(serial, seq, ext), serial=serial, sequence=seq))
    key_ids = sorted({s["key_id"] for s in detail["segments"]})
    certs = {c["key_id"]: c["pem"] for c in devices.certificates_of(b.db, serial)}
    cert_names = []
    for kid in key_ids:
        name = f"{serial}.cert.pem" if len(key_ids) == 1 else f"{serial}-{kid[:16]}.cert.pem"
        _write(out / name, certs[kid].encode())
        cert_names.append(name)
    audit_rows = _audit_slice(b, serial, min(seqs), max(seqs))
    if audit_rows:
        _write(
            out / "audit.log",
            b"".join(
                json.dumps({"entry": r["entry"], "sig": r["sig"]}, separators=(",", ":")).encode() + b"\n"
                for r in audit_rows
            ),
        )
    _write(out / "backend" / "agency-ca.pem", b.ca.cert_pem.encode())
    _write(out / "backend" / "backend.pub.pem", b.signer.public_key_pem())
    receipts = [segments.get(b.db, serial, s) for s in seqs]
    _write(
        out / "backend" / "receipts.jsonl",
        b"".join(
            json.dumps({"receipt": r["receipt"], "signature": r["receipt_sig"]}).encode() + b"\n"
            for r in receipts
        ),
    )
    trail = b.trail.entries_for(
        [f"recording:{recording_id}"] + [f"segment:{serial}/{s:010d}" for s in seqs], []
    )
    _write(out / "backend" / "audit-trail.jsonl", b"".join(json.dumps(t).encode() + b"\n" for t in trail))
    _write(
        out / "backend" / "recording.json",
        (
            json.dumps(
                {**detail, "exported_utc": iso_utc(time.time_ns()), "certificates": cert_names}, indent=2
            )
            + "\n"
        ).encode(),
    )
    _write(out / "README.md", _readme(detail, cert_names, bool(audit_rows)).encode())
    return len(seqs)


def _readme(d: dict[str, Any], certs: list[str], audit: bool) -> str:
    first, last = d["first_sequence"], d["last_sequence"]
    count = len(d["segments"])  # the detail's list of segment documents, not a number
    size = f"{d['bytes'] / 1e6:.1f} MB" if d["bytes"] >= 1_000_000 else f"{d['bytes']} bytes"
    cert = certs[0]
    gaps = [g["sequence"] for g in d["gaps"] if not g["closed_utc"]]
    return f"""# Evidence bundle: recording {d["recording_id"]}

Device `{d["device_serial"]}`, {count} segment{"" if count == 1 else "s"} (sequences {first}-{last}), {size} of video,
{d["first_utc"]} to {d["last_utc"]} (device clock, UTC).
{"Open gaps at the backend when exported: " + ", ".join(map(str, gaps)) if gaps else "No open gaps at the backend when exported."}

| file | what |
|---|---|
| `seg-NNNNNNNNNN.mp4` | video (H.264, fragmented MP4), byte for byte as recorded |
| `seg-NNNNNNNNNN.json` | the segment manifest (`bodycam.segment/1`): SHA-256 and size of the video, times, previous manifest's hash |
| `seg-NNNNNNNNNN.sig` | the camera's ECDSA P-256 signature (DER) over the manifest file |
| `{cert}` | the camera's X.509 certificate, issued by the agency CA at enrolment |
| {"`audit.log`" if audit else "(no `audit.log`)"} | {"the camera's signed audit log entries covering this recording" if audit else "the camera's audit log had not been uploaded"} |
| `backend/agency-ca.pem` | the agency CA certificate |
| `backend/backend.pub.pem`, `backend/receipts.jsonl` | the backend's receipt key and its signed receipt for each segment |
| `backend/audit-trail.jsonl` | the backend's signed, hash-chained audit entries for this recording (ingest, views, downloads, export) |
| `backend/recording.json` | summary as the backend saw it |

The format is specified in the bodycam repository, `docs/format.md`.

## Check with bodycam (offline)

```sh
bodycam verify . --key {cert}
```

Exit status 0 and `verify: OK` mean: every manifest is signed by the certificate's key, every video
matches its manifest, the chain between the segments is unbroken, and the audit log is intact.
The first segment links to sequence {first - 1}, which is not part of this recording; that link is
noted, not checked.

## Check with stock tools (OpenSSL, coreutils, jq)

```sh
openssl verify -CAfile backend/agency-ca.pem {cert}            # the camera certificate is the agency's
openssl x509 -in {cert} -pubkey -noout > device.pub.pem
openssl pkey -pubin -in device.pub.pem -outform DER | sha256sum   # equals .key_id of every manifest
for m in seg-*.json; do
  openssl dgst -sha256 -verify device.pub.pem -signature "${{m%.json}}.sig" "$m" >/dev/null || echo "bad signature: $m"
  [ "$(sha256sum < "${{m%.json}}.mp4" | cut -d' ' -f1)" = "$(jq -r .media.sha256 "$m")" ] || echo "media altered: $m"
  [ -z "$prev" ] || [ "$(jq -r .previous_manifest_sha256 "$m")" = "$prev" ] || echo "chain broken at $m"
  prev=$(sha256sum < "$m" | cut -d' ' -f1)
done; echo done
```

A receipt (one line of `backend/receipts.jsonl`) is checked by saving its `receipt` text exactly
(`jq -j .receipt > r.json`) and its base64 `signature` decoded (`jq -r .signature | base64 -d > r.sig`),
then `openssl dgst -sha256 -verify backend/backend.pub.pem -signature r.sig r.json`.
"""  # noqa: E501
