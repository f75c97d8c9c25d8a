"""Device request signatures (RFC 9421 + Content-Digest, docs/backend-api.md 4a) against a real backend.

Every request here is signed with a real enrolled device key; a man in the middle is played by
altering a signed, prepared request before it is sent. Also: our signatures checked by an independent
implementation (a signature base built by hand from the RFC's rules, verified with `openssl dgst`),
and the RFC's own ecdsa-p256-sha256 test vector (appendix B.2.4) through the library we sign with.
"""

from __future__ import annotations

import base64
import hashlib
import re
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from backendkit import TUS, BackendProcess, enrolled_device, record, segments_of
from bodycam.evidence.signer import FileKeySigner
from bodycam.offload import httpsig
from bodycam.offload.client import BackendClient
from bodycam.offload.tus import TusClient
from cryptography.hazmat.primitives.asymmetric import ec
from http_message_signatures import HTTPMessageVerifier, InvalidSignature, MappingKeyResolver
from http_message_signatures.algorithms import ECDSA_P256_SHA256
from pgkit import ENGINES, database_table

OCTETS = {"Content-Type": "application/offset+octet-stream"}


@pytest.fixture(scope="module", params=ENGINES)
def backend(tmp_path_factory, request):
    """The whole module runs on each engine: replay protection and uploads live in the database."""
    b = BackendProcess(tmp_path_factory.mktemp("backend"), database=database_table(request, request.param))
    b.cli("init")
    b.start()
    yield b
    b.stop()
    assert (b.data / "backend.sqlite3").exists() == (request.param == "sqlite"), "the engine the config named"


@pytest.fixture(scope="module")
def device(backend, tmp_path_factory):
    rig = record(tmp_path_factory.mktemp("rig"), "BC-SIG-1", after=5)
    return enrolled_device(backend, rig), segments_of(rig)


def refused(r: requests.Response, code: str = "unauthenticated", says: str = "") -> None:
    assert r.status_code == 401, (r.status_code, r.text)
    body = r.json()
    assert body["error"] == code and body["status"] == 401, body
    assert says in body["message"], body["message"]


def staged(backend: BackendProcess) -> set[Path]:
    return set((backend.data / "uploads").glob("*.part"))


def new_upload(dev: Any, seg: Any, sequence: int) -> str:
    r = dev.create(seg, extra_meta={"sequence": str(sequence)})
    assert r.status_code == 201, r.text
    return r.headers["Location"]


# --- a man in the middle -------------------------------------------------------------------------


def test_changed_upload_metadata_is_refused(backend, device) -> None:
    dev, segs = device
    before = staged(backend)
    meta = f"kind {base64.b64encode(b'segment').decode()},sequence {base64.b64encode(b'7').decode()}"
    p = dev.prepare("POST", "/v1/uploads", headers={**TUS, "Upload-Length": "10", "Upload-Metadata": meta})
    p.headers["Upload-Metadata"] = meta.replace(base64.b64encode(b"7").decode(), base64.b64encode(b"8").decode())
    refused(dev.send(p), says="does not verify")
    assert staged(backend) == before, "nothing was created"


def test_changed_upload_offset_or_length_is_refused(backend, device) -> None:
    dev, segs = device
    loc = new_upload(dev, segs[0], 1001)
    p = dev.prepare("PATCH", loc, headers={**TUS, **OCTETS, "Upload-Offset": "0"}, data=b"abc")
    p.headers["Upload-Offset"] = "3"
    refused(dev.send(p), says="does not verify")
    p = dev.prepare("POST", "/v1/uploads", headers={**TUS, "Upload-Length": "10",
                                                    "Upload-Metadata": "kind " + base64.b64encode(b"audit").decode()})
    p.headers["Upload-Length"] = "11"
    refused(dev.send(p))
    assert dev.head(loc).headers["Upload-Offset"] == "0"


def test_changed_query_or_path_is_refused(backend, device) -> None:
    dev, _ = device
    p = dev.prepare("GET", "/v1/device/status")
    p.url += "?open=1"
    refused(dev.send(p), says="does not verify")
    p = dev.prepare("GET", "/v1/device/segments/1")
    p.url = p.url.replace("/segments/1", "/segments/2")
    refused(dev.send(p), says="does not verify")


def test_changed_patch_body_is_refused_and_not_stored(backend, device) -> None:
    dev, segs = device
    data = segs[0].media.read_bytes()
    loc = new_upload(dev, segs[0], 1002)
    part = backend.data / "uploads" / (loc.rsplit("/", 1)[1] + ".part")
    p = dev.prepare("PATCH", loc, headers={**TUS, **OCTETS, "Upload-Offset": "0"}, data=data[:5000])
    p.body = bytes([data[0] ^ 1]) + data[1:5000]  # one bit changed, Content-Digest left as signed
    refused(dev.send(p), "digest_mismatch", "Content-Digest")
    assert dev.head(loc).headers["Upload-Offset"] == "0" and part.stat().st_size == 0, "nothing was stored"
    # the attacker recomputes the digest too: then the signature no longer covers it
    p = dev.prepare("PATCH", loc, headers={**TUS, **OCTETS, "Upload-Offset": "0"}, data=data[:5000])
    p.body = bytes([data[0] ^ 1]) + data[1:5000]
    p.headers["Content-Digest"] = httpsig.content_digest(p.body)
    refused(dev.send(p), says="does not verify")
    assert dev.head(loc).headers["Upload-Offset"] == "0"
    # the honest chunk still goes through
    assert dev.patch(loc, 0, data[:5000]).headers["Upload-Offset"] == "5000"


def test_changed_creation_body_creates_nothing(backend, device) -> None:
    dev, segs = device
    seg = segs[0]
    before = staged(backend)
    p = dev.prepare("POST", "/v1/uploads", headers={
        **TUS, **OCTETS, "Upload-Length": str(seg.media.stat().st_size),
        "Upload-Metadata": f"kind {base64.b64encode(b'segment').decode()},"
                           f"sequence {base64.b64encode(str(seg.sequence).encode()).decode()}"},
        data=seg.media.read_bytes())
    p.body = bytes(reversed(p.body))
    refused(dev.send(p), "digest_mismatch")
    assert staged(backend) == before
    assert dev.request("GET", f"/v1/device/segments/{seg.sequence}").status_code == 404


def test_changed_finalize_body_is_refused(backend, device) -> None:
    dev, segs = device
    seg = segs[0]
    loc = new_upload(dev, seg, seg.sequence)
    assert dev.patch(loc, 0, seg.media.read_bytes()).status_code == 204
    body = {"manifest": base64.b64encode(seg.manifest.read_bytes()).decode(),
            "signature": base64.b64encode(seg.signature.read_bytes()).decode()}
    p = dev.prepare("POST", loc + "/finalize", json=body)
    p.body = p.body.replace(b'"manifest": "', b'"manifest" :"')  # same JSON, other bytes, same length
    refused(dev.send(p), "digest_mismatch")
    assert dev.request("GET", f"/v1/device/segments/{seg.sequence}").status_code == 404, "not finalized"
    assert dev.finalize(loc, seg).status_code == 200


def test_a_streamed_body_is_checked_against_its_digest(backend, device) -> None:
    dev, segs = device
    data = segs[0].media.read_bytes()[:300_000]
    loc = new_upload(dev, segs[0], 1003)
    h = {**TUS, **OCTETS, "Upload-Offset": "0"}

    def chunks(body: bytes):
        for i in range(0, len(body), 65536):
            yield body[i : i + 65536]

    bad = data[:-1] + bytes([data[-1] ^ 1])
    r = dev.http.patch(backend.url + loc, data=chunks(bad), headers={**h, **dev.headers("PATCH", loc, h, data)})
    refused(r, "digest_mismatch")
    assert dev.head(loc).headers["Upload-Offset"] == "0"
    r = dev.http.patch(backend.url + loc, data=chunks(data), headers={**h, **dev.headers("PATCH", loc, h, data)})
    assert r.status_code == 204 and r.headers["Upload-Offset"] == str(len(data)), r.text


# --- coverage, replay, the old scheme --------------------------------------------------------------


def test_acted_on_headers_must_be_covered(backend, device) -> None:
    dev, segs = device
    loc = new_upload(dev, segs[0], 1004)
    # Upload-Offset sent but left out of the signature
    h = {**TUS, **OCTETS}
    signed = dev.headers("PATCH", loc, h, b"abc")
    r = dev.http.patch(backend.url + loc, data=b"abc", headers={**h, **signed, "Upload-Offset": "0"})
    refused(r, says="does not cover upload-offset")
    # a body without Content-Digest
    h = {**TUS, **OCTETS, "Upload-Offset": "0"}
    signed = dev.headers("PATCH", loc, h, None)
    refused(dev.http.patch(backend.url + loc, data=b"abc", headers={**h, **signed}), says="Content-Digest")
    # Upload-Metadata added after signing
    h = {**TUS, "Upload-Length": "10"}
    signed = dev.headers("POST", "/v1/uploads", h)
    r = dev.http.post(backend.url + "/v1/uploads", headers={**h, **signed, "Upload-Metadata": "kind YXVkaXQ="})
    refused(r, says="does not cover upload-metadata")
    # a required signature parameter missing (no nonce: nothing to stop a replay)
    signed = dev.headers("GET", "/v1/device/status")
    signed["Signature-Input"] = re.sub(r';nonce="[^"]*"', "", signed["Signature-Input"])
    refused(dev.http.get(backend.url + "/v1/device/status", headers=signed), says="nonce")
    assert dev.head(loc).headers["Upload-Offset"] == "0"


def test_a_replayed_request_is_refused(backend, device) -> None:
    dev, segs = device
    loc = new_upload(dev, segs[0], 1005)
    p = dev.prepare("PATCH", loc, headers={**TUS, **OCTETS, "Upload-Offset": "0"}, data=b"abc")
    assert dev.send(p).status_code == 204
    refused(dev.send(p), "replayed")
    assert dev.head(loc).headers["Upload-Offset"] == "3"


def test_the_old_bodycam_signature_headers_are_not_accepted(backend, device) -> None:
    dev, _ = device
    r = requests.get(backend.url + "/v1/device/status", timeout=10, headers={
        "Bodycam-Key-Id": dev.signer.key_id, "Bodycam-Timestamp": "1", "Bodycam-Nonce": "n" * 32,
        "Bodycam-Signature": "AAAA"})
    refused(r, says="RFC 9421")
    assert "Signature" in r.headers["WWW-Authenticate"]


def test_session_tokens_still_work(backend, device) -> None:
    dev, _ = device
    token = dev.session_token()
    r = requests.get(backend.url + "/v1/device/status", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert r.status_code == 200 and r.json()["serial"] == dev.serial


# --- an independent check of our signatures ------------------------------------------------------


def der_of_raw(raw: bytes) -> bytes:
    """ECDSA r||s (RFC 9421) -> DER SEQUENCE of two INTEGERs (what openssl takes), written out by hand."""
    def integer(b: bytes) -> bytes:
        b = b.lstrip(b"\x00") or b"\x00"
        if b[0] & 0x80:
            b = b"\x00" + b
        return bytes([0x02, len(b)]) + b
    body = integer(raw[:32]) + integer(raw[32:])
    return bytes([0x30, len(body)]) + body


def test_openssl_verifies_a_signature_base_built_by_hand(tmp_path: Path) -> None:
    signer = FileKeySigner(ec.generate_private_key(ec.SECP256R1()))
    body = b"0123456789" * 100
    headers = {**TUS, **OCTETS, "Upload-Offset": "4096", "Upload-Checksum": "sha256 AAAA", "Accept": "*/*"}
    url = "https://backend.example:8443/v1/uploads/3f2a9c?x=1&y=%20z"
    out = httpsig.sign_headers(signer, "PATCH", url, headers, body, created=1764547200, nonce="N" * 24)

    # RFC 9530: sha-256 as a Structured Field byte sequence
    digest = "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode() + ":"
    assert out["Content-Digest"] == digest
    # RFC 9421 section 2.5, from the rules, not from the library: one line per covered component, in order
    params = ('("@method" "@path" "@query" "content-digest" "content-type" "tus-resumable" "upload-offset" '
              f'"upload-checksum");created=1764547200;keyid="{signer.key_id}";alg="ecdsa-p256-sha256";'
              f'nonce="{"N" * 24}"')
    base = "\n".join([
        '"@method": PATCH',
        '"@path": /v1/uploads/3f2a9c',
        '"@query": ?x=1&y=%20z',
        f'"content-digest": {digest}',
        '"content-type": application/offset+octet-stream',
        '"tus-resumable": 1.0.0',
        '"upload-offset": 4096',
        '"upload-checksum": sha256 AAAA',
        f'"@signature-params": {params}',
    ])
    assert out["Signature-Input"] == f"bodycam={params}"
    m = re.fullmatch(r"bodycam=:([A-Za-z0-9+/=]+):", out["Signature"])
    assert m, out["Signature"]
    raw = base64.b64decode(m[1])
    assert len(raw) == 64, "RFC 9421 ECDSA P-256 signatures are raw r||s, 64 bytes"
    (tmp_path / "base.txt").write_bytes(base.encode())
    (tmp_path / "sig.der").write_bytes(der_of_raw(raw))
    (tmp_path / "pub.pem").write_bytes(signer.public_key_pem())
    r = subprocess.run(["openssl", "dgst", "-sha256", "-verify", str(tmp_path / "pub.pem"), "-signature",
                        str(tmp_path / "sig.der"), str(tmp_path / "base.txt")], capture_output=True, text=True)
    assert r.returncode == 0 and "Verified OK" in r.stdout, r.stdout + r.stderr
    (tmp_path / "base.txt").write_bytes(base.replace("4096", "4097").encode())
    r = subprocess.run(["openssl", "dgst", "-sha256", "-verify", str(tmp_path / "pub.pem"), "-signature",
                        str(tmp_path / "sig.der"), str(tmp_path / "base.txt")], capture_output=True, text=True)
    assert r.returncode != 0, "a changed offset must not verify"


RFC_KEY_PUB = b"""-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEqIVYZVLCrPZHGHjP17CTW0/+D9Lf
w0EkjqF7xB4FivAxzic30tMM4GF+hR6Dxh71Z50VGGdldkkDXZCnTNnoXQ==
-----END PUBLIC KEY-----
"""


@dataclass
class _Response:
    status_code: int
    headers: dict[str, str] = field(default_factory=dict)
    request: Any = None


def test_rfc9421_appendix_b24_ecdsa_p256_sha256() -> None:
    """The RFC's response signed with test-key-ecc-p256 verifies through the library httpsig uses, and
    stops verifying when one covered field changes."""
    headers = {
        "Content-Type": "application/json",
        "Content-Digest": "sha-512=:mEWXIS7MaLRuGgxOBdODa3xqM1XdEvxoYhvlCFJ41QJgJc4GTsPp29l5oGX69wWdXymyU0rjJuahq4l5"
                          "aGgfLQ==:",
        "Content-Length": "23",
        "Signature-Input": 'sig-b24=("@status" "content-type" "content-digest" "content-length");'
                           'created=1618884473;keyid="test-key-ecc-p256"',
        "Signature": "sig-b24=:wNmSUAhwb5LxtOtOpNa6W5xj067m5hFrj0XQ4fvpaCLx0NKocgPquLgyahnzDnDAUy5eCdlYUEkLIj+32o"
                     "iasw==:",
    }
    verifier = HTTPMessageVerifier(signature_algorithm=ECDSA_P256_SHA256, key_resolver=MappingKeyResolver(
        public_keys={"test-key-ecc-p256": RFC_KEY_PUB}, private_keys={}))
    (result,) = verifier.verify(_Response(200, headers), max_age=None, body=b'{"message": "good dog"}')
    assert result.parameters == {"created": 1618884473, "keyid": "test-key-ecc-p256"}
    with pytest.raises(InvalidSignature):
        verifier.verify(_Response(200, {**headers, "Content-Length": "24"}), max_age=None)


# --- the camera's own client through a man in the middle -----------------------------------------


class FlipFirstBody(requests.Session):
    """Flips one bit in the body of the first ``n`` requests that carry one, after they were signed."""

    def __init__(self, n: int = 1) -> None:
        super().__init__()
        self.left = n
        self.flipped: list[str] = []

    def send(self, request: requests.PreparedRequest, **kw: Any) -> requests.Response:  # type: ignore[override]
        if self.left and isinstance(request.body, bytes) and request.body:
            self.left -= 1
            request.body = bytes([request.body[0] ^ 1]) + request.body[1:]
            self.flipped.append(f"{request.method} {request.path_url}")
        return super().send(request, **kw)


def test_the_camera_client_resends_a_chunk_changed_in_transit(backend, device, tmp_path) -> None:
    """The device's tus client (BackendClient + TusClient) PATCHes through a man in the middle that
    changes the first chunk: refused (digest_mismatch), sent again, and the stored bytes are the segment's."""
    dev, segs = device
    seg = segs[0]
    data = seg.media.read_bytes()
    loc = new_upload(dev, seg, 1006)
    mitm = FlipFirstBody()
    tus = TusClient(BackendClient(backend.url, dev.signer, session=mitm))
    done = tus.send(loc, lambda at, n: data[at : at + n], offset=0, length=len(data), chunk_bytes=10_000,
                    stop=threading.Event())
    assert done == len(data) and mitm.flipped == [f"PATCH {loc}"]
    part = backend.data / "uploads" / (loc.rsplit("/", 1)[1] + ".part")
    assert part.read_bytes() == data, "only the bytes the camera signed were stored"
