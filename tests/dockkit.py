"""Docked cameras by the hundred, each running the device's own code: enrolment (bodycam.offload.enrol)
and the dock's uploader (bodycam.offload.uploader.Uploader) over its own data directory, which frees a
segment only after a verified receipt. Their segments are real signed, chained `bodycam.segment/1`
manifests (bench/offload.py's make_segments) over random media: the backend hashes media but does not
decode it, so random bytes cost it what H.264 would, and no encoder has to run 2,000 times."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests
from bodycam import config as configmod
from bodycam.clock import SystemClock
from bodycam.evidence.audit import AuditLog
from bodycam.evidence.signer import FileKeySigner
from bodycam.layout import DataLayout
from bodycam.offload import enrol as enrolmod
from bodycam.offload.client import BackendClient
from bodycam.offload.receipts import verify_segment_receipt
from bodycam.offload.spool import Spool
from bodycam.offload.uploader import PassResult, StopSignal, Uploader
from cryptography.hazmat.primitives.asymmetric import ec

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.offload import make_segments  # noqa: E402


@dataclass
class DockedCamera:
    root: Path
    serial: str
    url: str
    ca: str
    signer: FileKeySigner = field(default_factory=lambda: FileKeySigner(ec.generate_private_key(ec.SECP256R1())))
    segments: int = 0
    chunk_bytes: int = 8 << 20
    passes: list[PassResult] = field(default_factory=list)
    acked_at: dict[int, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.cfg = configmod.from_dict({
            "device": {"serial": self.serial, "officer_id": "PC-FLEET", "data_dir": str(self.root)},
            "offload": {"backend_url": self.url, "ca_file": self.ca, "chunk_bytes": self.chunk_bytes,
                        "max_backoff_seconds": 2.0, "timeout_seconds": 60},
        })
        self.layout = DataLayout(self.root)
        self.layout.create()

    def record(self, n: int, size: int, blob: bytes) -> None:
        """n sealed segments on the card, written as the sealer leaves them (the .mp4 rename last)."""
        for seg in make_segments(self.signer, self.serial, n, size, blob):
            stem = self.layout.segments / f"seg-{seg.sequence:010d}"
            stem.with_suffix(".json").write_bytes(seg.manifest)
            stem.with_suffix(".sig").write_bytes(seg.signature)
            stem.with_suffix(".mp4.part").write_bytes(seg.media)
            os.replace(stem.with_suffix(".mp4.part"), stem.with_suffix(".mp4"))
        self.segments = n
        self.manifests = {s: (self.layout.segments / f"seg-{s:010d}.json").read_bytes() for s in range(1, n + 1)}

    def enrol(self, admin: requests.Session) -> None:
        r = admin.post(f"{self.url}/v1/devices/{self.serial}/enrol-token", timeout=30)
        assert r.status_code == 201, r.text
        self.enrolment = enrolmod.enrol(self.cfg, self.signer, url=self.url, token=r.json()["token"])

    def dock(self, stop: threading.Event | None = None) -> PassResult:
        """Passes of the real uploader until it reports done with nothing failed (a dock retries too)."""
        audit = AuditLog(self.layout.audit_log, signer=self.signer, clock=SystemClock(), boot_id="fleet")
        audit.append("power_on", serial=self.serial)
        client = BackendClient(self.url, self.signer, timeout=self.cfg.offload.timeout_seconds, verify=self.ca)
        up = Uploader(layout=self.layout, serial=self.serial, client=client, pins=self.enrolment.pins,
                      config=self.cfg.offload, clock=SystemClock(), audit=audit.append)
        stop = stop or StopSignal()
        while True:
            res = up.run_pass(stop)
            self.passes.append(res)
            now = time.monotonic()
            for s in res.uploaded + res.duplicates:
                self.acked_at.setdefault(s, now)
            if res.outcome != "done" or not (res.failed or res.rejected or res.error):
                return res

    def left_on_card(self) -> list[int]:
        return sorted(int(p.stem[4:]) for p in self.layout.segments.glob("seg-*.mp4"))

    def receipts(self) -> dict[int, dict]:
        """Sequence -> the receipt document the camera kept, checked again here against the pinned key
        and the manifest it uploaded (the uploader checked it before freeing; this checks the file)."""
        spool = Spool(self.layout)
        out = {}
        for s in sorted(spool.acknowledged()):
            body = json.loads(spool.receipt_path(s).read_text())
            manifest = self.manifests[s]
            doc = verify_segment_receipt(body, pins=self.enrolment.pins, serial=self.serial, sequence=s,
                                         manifest=manifest)
            assert doc["manifest_sha256"] == hashlib.sha256(manifest).hexdigest()
            out[s] = doc
        return out
