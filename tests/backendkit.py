"""Test kit for the evidence backend: a real `bodycam backend serve` process on 127.0.0.1, and a
device-side client that speaks the documented HTTP API (docs/backend-api.md) with real device keys
and real sealed segments from the recording rig."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from bodycam.offload import httpsig
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
from rig import Rig

ROOT = Path(__file__).resolve().parents[1]
TUS = {"Tus-Resumable": "1.0.0"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    return repr(v)


class BackendProcess:
    """`python -m bodycam.cli backend serve` in its own process group; SIGKILL-able and restartable."""

    def __init__(self, root: Path, **tables: dict[str, Any]) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        conf: dict[str, dict[str, Any]] = {
            "server": {"host": "127.0.0.1", "port": self.port, "log_level": "info"},
            "storage": {"data_dir": str(root / "data")},
        }
        for name, values in tables.items():
            conf.setdefault(name, {}).update(values)
        self.config = root / "backend.toml"
        self.config.write_text(
            "".join(
                f"[{t}]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in vals.items())
                for t, vals in conf.items()
            )
        )
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "bodycam.cli", "backend", *args, "--config", str(self.config)]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if check and r.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed ({r.returncode}): {r.stderr}")
        return r

    def start(self, timeout: float = 30) -> None:
        self.starts += 1
        self.log = open(self.root / f"serve-{self.starts}.log", "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bodycam.cli", "backend", "serve", "--config", str(self.config)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=ROOT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"backend exited: {(self.root / f'serve-{self.starts}.log').read_text()}"
                )
            try:
                if requests.get(self.url + "/healthz", timeout=1).ok:
                    return
            except requests.ConnectionError:
                time.sleep(0.1)
        raise AssertionError("backend did not answer /healthz in time")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=15)
        if getattr(self, "log", None):
            self.log.close()

    def stop(self) -> None:
        self.kill(signal.SIGTERM)

    @property
    def data(self) -> Path:
        return self.root / "data"

    def admin_token(self, name: str = "admin", role: str = "admin") -> str:
        return self.cli("token", "create", name, "--role", role).stdout.strip()

    def enrol_token(self, serial: str) -> str:
        return self.cli("enrol-token", serial).stdout.strip()

    def backend_public_pem(self) -> bytes:
        return requests.get(self.url + "/v1/backend", timeout=5).json()["backend_public_key_pem"].encode()


@dataclass
class Segment:
    sequence: int
    media: Path

    @property
    def manifest(self) -> Path:
        return self.media.with_suffix(".json")

    @property
    def signature(self) -> Path:
        return self.media.with_suffix(".sig")

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.media.read_bytes()).hexdigest()


def record(tmp: Path, serial: str, *, before: int = 12, after: int = 40) -> Rig:
    """Real sealed, signed, chained segments from the real encoder/recorder (tests/rig.py)."""
    rig = Rig(tmp, device={"serial": serial})
    rig.frames(before)
    rig.trigger()
    rig.frames(after)
    rig.recorder.stop()
    return rig


def segments_of(rig: Rig) -> list[Segment]:
    return [Segment(int(p.stem[4:]), p) for p in rig.segments()]


class Device:
    """The device side of the API, written from docs/backend-api.md (not from the server code)."""

    def __init__(self, url: str, signer: Any, serial: str) -> None:
        self.url, self.signer, self.serial = url, signer, serial
        self.http = requests.Session()
        self.token: str | None = None  # set: requests carry this session token instead of a signature

    def csr_pem(self, key_path: Path) -> str:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.serial)]))
            .sign(key, hashes.SHA256())
        )  # type: ignore[arg-type]
        return csr.public_bytes(serialization.Encoding.PEM).decode()

    def enrol(self, token: str, key_path: Path | None = None) -> requests.Response:
        if key_path is not None:
            body = {"serial": self.serial, "token": token, "csr_pem": self.csr_pem(key_path)}
        else:
            proof = self.signer.sign(f"bodycam-enrol/1\n{self.serial}\n{token}".encode())
            body = {
                "serial": self.serial,
                "token": token,
                "public_key_pem": self.signer.public_key_pem().decode(),
                "proof": base64.b64encode(proof).decode(),
            }
        return self.http.post(self.url + "/v1/enrol", json=body, timeout=10)

    def headers(self, method: str, path: str, headers: dict[str, str] | None = None, body: bytes | None = None,
                *, created: int | None = None, nonce: str | None = None) -> dict[str, str]:
        """The RFC 9421 headers (Content-Digest, Signature-Input, Signature) for a request sent by hand."""
        return httpsig.sign_headers(
            self.signer, method, self.url + path, headers or {}, body,
            created=int(time.time()) if created is None else created,
            nonce=nonce or secrets.token_urlsafe(18))

    def prepare(self, method: str, path: str, *, signed_body: bytes | None = None,
                **kw: Any) -> requests.PreparedRequest:
        """A signed request exactly as it will be sent (tests alter it to play a man in the middle).
        A body streamed from an iterator is signed as ``signed_body``: the bytes it will yield."""
        p = self.http.prepare_request(requests.Request(method, self.url + path, **kw))
        if self.token is not None:
            p.headers["Authorization"] = f"Bearer {self.token}"
            return p
        body = p.body.encode() if isinstance(p.body, str) else p.body
        if body is not None and not isinstance(body, bytes):
            assert signed_body is not None, "a streamed body needs signed_body= (its bytes) for Content-Digest"
            body = signed_body
        fields = {k: v.decode("latin-1") if isinstance(v, bytes) else v for k, v in p.headers.items()}
        p.headers.update(self.headers(method, p.path_url, fields, body))
        return p

    def send(self, prepared: requests.PreparedRequest, timeout: float = 30) -> requests.Response:
        return self.http.send(prepared, timeout=timeout, allow_redirects=False)

    def request(self, method: str, path: str, **kw: Any) -> requests.Response:
        timeout = kw.pop("timeout", 30)
        return self.send(self.prepare(method, path, **kw), timeout=timeout)

    def session_token(self) -> str:
        r = self.request("POST", "/v1/device/session")
        assert r.status_code == 200, r.text
        return r.json()["token"]

    def create(
        self,
        seg: Segment,
        *,
        length: int | None = None,
        kind: str = "segment",
        extra_meta: dict[str, str | bytes] | None = None,
        headers: dict[str, str] | None = None,
        data: Any = None,
        signed_body: bytes | None = None,
    ) -> requests.Response:
        meta = {"kind": kind, "sequence": str(seg.sequence), "sha256": seg.sha256, **(extra_meta or {})}
        if kind == "audit":
            meta = {"kind": "audit", **(extra_meta or {})}
        h = {
            **TUS,
            "Upload-Length": str(seg.media.stat().st_size if length is None else length),
            "Upload-Metadata": ",".join(
                f"{k} {base64.b64encode(v if isinstance(v, bytes) else v.encode()).decode()}"
                for k, v in meta.items()
            ),
            **(headers or {}),
        }
        return self.request("POST", "/v1/uploads", headers=h, data=data, signed_body=signed_body)

    def create_whole(self, seg: Segment, *, media: bytes | None = None, **extra: str | bytes) -> requests.Response:
        """The whole segment and its signed manifest in the creation request (finalize on creation)."""
        meta: dict[str, str | bytes] = {
            "manifest": seg.manifest.read_bytes(),
            "signature": seg.signature.read_bytes(),
            **extra,
        }
        return self.create(
            seg,
            data=seg.media.read_bytes() if media is None else media,
            extra_meta=meta,
            headers={"Content-Type": "application/offset+octet-stream"},
        )

    def patch(self, location: str, offset: int, data: Any, *, signed_body: bytes | None = None,
              **headers: str) -> requests.Response:
        h = {
            **TUS,
            "Upload-Offset": str(offset),
            "Content-Type": "application/offset+octet-stream",
            **headers,
        }
        return self.request("PATCH", location, headers=h, data=data, signed_body=signed_body)

    def head(self, location: str) -> requests.Response:
        return self.request("HEAD", location, headers=TUS)

    def finalize(
        self,
        location: str,
        seg: Segment | None = None,
        *,
        manifest: bytes | None = None,
        signature: bytes | None = None,
    ) -> requests.Response:
        body: dict[str, str] = {}
        if seg is not None:
            body = {
                "manifest": base64.b64encode(
                    seg.manifest.read_bytes() if manifest is None else manifest
                ).decode(),
                "signature": base64.b64encode(
                    seg.signature.read_bytes() if signature is None else signature
                ).decode(),
            }
        return self.request("POST", location + "/finalize", json=body)

    def upload(
        self, seg: Segment, *, media: bytes | None = None, chunk: int = 1 << 20, **finalize_kw: Any
    ) -> requests.Response:
        data = seg.media.read_bytes() if media is None else media
        r = self.create(seg, length=len(data))
        assert r.status_code == 201, r.text
        loc = r.headers["Location"]
        off = 0
        while off < len(data):
            p = self.patch(loc, off, data[off : off + chunk])
            assert p.status_code == 204, p.text
            off = int(p.headers["Upload-Offset"])
        return self.finalize(loc, seg, **finalize_kw)


def enrolled_device(backend: BackendProcess, rig: Rig) -> Device:
    dev = Device(backend.url, rig.signer, rig.cfg.device.serial)
    r = dev.enrol(backend.enrol_token(dev.serial), rig.cfg.key_path)
    assert r.status_code == 201, r.text
    return dev


def people(backend: BackendProcess, token: str) -> requests.Session:
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {token}"
    return s


def store_files(backend: BackendProcess) -> list[Path]:
    root = backend.data / "store"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []
