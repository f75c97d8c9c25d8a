"""The evidence backend end to end: a real `bodycam backend serve` process on 127.0.0.1, real device
keys and real sealed segments from the recorder, tuspy as a stock tus client."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys

import pytest
import requests
from backendkit import TUS, BackendProcess, Device, enrolled_device, people, record, segments_of, store_files
from bodycam.evidence.audit import AuditLog
from bodycam_backend.audit import verify_lines
from bodycam_backend.receipts import verify_receipt
from pgkit import ENGINES, database_table
from tusclient import client as tus_client


@pytest.fixture(scope="module", params=ENGINES)
def backend(tmp_path_factory, request):
    """The whole module runs on each engine: SQLite (embedded) and PostgreSQL."""
    b = BackendProcess(tmp_path_factory.mktemp("backend"), limits={"max_upload_bytes": 4_000_000},
                       database=database_table(request, request.param))
    b.cli("init")
    b.start()
    yield b
    b.stop()
    assert (b.data / "backend.sqlite3").exists() == (request.param == "sqlite"), "the engine the config named"


@pytest.fixture(scope="module")
def admin(backend):
    return people(backend, backend.admin_token())


def check_receipt(backend: BackendProcess, body: dict, seg) -> dict:
    doc = verify_receipt(body["receipt"], body["signature"], backend.backend_public_pem())
    assert doc["manifest_sha256"] == hashlib.sha256(seg.manifest.read_bytes()).hexdigest()
    assert doc["media_sha256"] == seg.sha256 == json.loads(seg.manifest.read_bytes())["media"]["sha256"]
    assert doc["sequence"] == seg.sequence and doc["kind"] == "segment"
    return doc


def test_enrolment_token_is_one_time_and_issues_an_agency_certificate(backend, tmp_path) -> None:
    rig = record(tmp_path, "BC-ENROL-1", after=5)
    dev = Device(backend.url, rig.signer, "BC-ENROL-1")
    token = backend.enrol_token("BC-ENROL-1")
    assert dev.enrol("bce_wrong").status_code == 403
    r = dev.enrol(token, rig.cfg.key_path)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["key_id"] == rig.signer.key_id
    (tmp_path / "dev.pem").write_text(body["certificate_pem"])
    (tmp_path / "ca.pem").write_text(body["ca_certificate_pem"])
    ok = subprocess.run(
        ["openssl", "verify", "-CAfile", tmp_path / "ca.pem", tmp_path / "dev.pem"],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    again = dev.enrol(token, rig.cfg.key_path)
    assert again.status_code == 403 and again.json()["error"] == "enrol_token_used"
    # the proof-of-possession form (for keys behind the Signer seam) works with a fresh token
    r2 = Device(backend.url, rig.signer, "BC-ENROL-1").enrol(backend.enrol_token("BC-ENROL-1"))
    assert r2.status_code == 201, r2.text


def test_unenrolled_and_revoked_devices_are_refused(backend, admin, tmp_path) -> None:
    rig = record(tmp_path / "a", "BC-LOST-1", after=5)
    seg = segments_of(rig)[0]
    stranger = Device(backend.url, rig.signer, "BC-LOST-1")
    r = stranger.create(seg)
    assert r.status_code == 401 and r.json()["error"] == "unauthenticated"
    assert (
        requests.post(backend.url + "/v1/uploads", headers={**TUS, "Upload-Length": "5"}).status_code == 401
    )
    dev = enrolled_device(backend, rig)
    token = dev.session_token()
    created = dev.create(seg)
    assert created.status_code == 201
    # a reviewer may not revoke; an admin may
    reviewer = people(backend, backend.admin_token("rita", "reviewer"))
    assert reviewer.post(backend.url + "/v1/devices/BC-LOST-1/revoke").status_code == 403
    assert admin.post(backend.url + "/v1/devices/BC-LOST-1/revoke").status_code == 200
    for resp in (
        dev.create(seg),
        dev.patch(created.headers["Location"], 0, b"x"),
        requests.post(
            backend.url + "/v1/uploads",
            headers={**TUS, "Upload-Length": "5", "Authorization": f"Bearer {token}"},
        ),
    ):
        assert resp.status_code == 403 and resp.json()["error"] == "device_revoked", resp.text
    # CLI revoke of another camera works the same way
    rig2 = record(tmp_path / "b", "BC-LOST-2", after=5)
    dev2 = enrolled_device(backend, rig2)
    assert "revoked" in backend.cli("revoke", "BC-LOST-2").stdout
    assert dev2.create(segments_of(rig2)[0]).status_code == 403
    # both revocations are in the signed audit trail, with who did it; the reviewer's refusal is not
    entries = admin.get(backend.url + "/v1/audit", params={"limit": 10000}).json()["entries"]
    revokes = [(d["actor"], d["target"]) for d in map(json.loads, (e["entry"] for e in entries))
               if d["action"] == "revoke"]
    assert revokes[0] == ("person:admin", "device:BC-LOST-1")
    assert [t for _, t in revokes] == ["device:BC-LOST-1", "device:BC-LOST-2"], revokes
    assert revokes[1][0].startswith("cli:"), revokes


def test_signed_requests_refuse_replay_and_skew(backend, tmp_path) -> None:
    rig = record(tmp_path, "BC-SIGN-1", after=5)
    dev = enrolled_device(backend, rig)
    h = dev.headers("GET", "/v1/device/status")
    assert requests.get(backend.url + "/v1/device/status", headers=h).status_code == 200
    replay = requests.get(backend.url + "/v1/device/status", headers=h)
    assert replay.status_code == 401 and replay.json()["error"] == "replayed"
    old = dev.headers("GET", "/v1/device/status", created=1_000_000_000)
    skew = requests.get(backend.url + "/v1/device/status", headers=old)
    assert skew.status_code == 401 and skew.json()["error"] == "clock_skew" and "server_utc_ns" in skew.json()
    wrong_path = dev.headers("GET", "/v1/device/other")
    assert requests.get(backend.url + "/v1/device/status", headers=wrong_path).status_code == 401
    t = requests.get(backend.url + "/v1/time").json()
    assert abs(t["utc_ns"] / 1e9 - __import__("time").time()) < 5


def test_tuspy_upload_then_finalize_gives_a_signed_receipt(backend, tmp_path) -> None:
    rig = record(tmp_path, "BC-TUSPY-1")
    dev = enrolled_device(backend, rig)
    staged = set((backend.data / "uploads").glob("*.part"))
    client = tus_client.TusClient(
        backend.url + "/v1/uploads", headers={"Authorization": f"Bearer {dev.session_token()}"}
    )
    for seg in segments_of(rig):
        up = client.uploader(
            file_path=str(seg.media),
            chunk_size=20_000,
            upload_checksum=True,
            metadata={
                "kind": "segment",
                "sequence": str(seg.sequence),
                "sha256": seg.sha256,
                "filename": "../../etc/passwd",
            },
        )
        up.upload()
        path = up.url.removeprefix(backend.url)
        r = dev.finalize(path, seg)
        assert r.status_code == 200, r.text
        assert r.json()["duplicate"] is False and r.json()["gaps"] == []
        check_receipt(backend, r.json(), seg)
    names = [p.name for p in store_files(backend)]
    assert "passwd" not in " ".join(names)
    assert set((backend.data / "uploads").glob("*.part")) == staged, "staging emptied after finalize"


def test_duplicate_and_replayed_uploads_return_the_same_receipt(backend, tmp_path) -> None:
    rig = record(tmp_path, "BC-DUP-1", after=5)
    dev = enrolled_device(backend, rig)
    seg = segments_of(rig)[0]
    first = dev.upload(seg)
    assert first.status_code == 200, first.text
    before = store_files(backend)
    second = dev.upload(seg)  # the whole upload again (the dock lost the receipt)
    assert second.status_code == 200 and second.json()["duplicate"] is True
    assert (second.json()["receipt"], second.json()["signature"]) == (
        first.json()["receipt"],
        first.json()["signature"],
    )
    asked = dev.request("GET", f"/v1/device/segments/{seg.sequence}")
    assert asked.json()["receipt"] == first.json()["receipt"]
    assert store_files(backend) == before, "nothing stored twice"
    # finalizing the same upload again is idempotent too (this one uses creation-with-upload)
    r = dev.create(
        seg, data=seg.media.read_bytes(), headers={"Content-Type": "application/offset+octet-stream"}
    )
    assert r.status_code == 201 and int(r.headers["Upload-Offset"]) == seg.media.stat().st_size
    loc = r.headers["Location"]
    a, b = dev.finalize(loc, seg), dev.finalize(loc, seg)
    assert a.json()["receipt"] == b.json()["receipt"] == first.json()["receipt"]


def test_whole_segment_with_its_signed_manifest_is_finalized_in_the_creation_request(
    backend, admin, tmp_path
) -> None:
    rig = record(tmp_path, "BC-ONE-1", after=45)
    dev = enrolled_device(backend, rig)
    seg, seg2 = segments_of(rig)[:2]
    size = seg.media.stat().st_size
    r = dev.create_whole(seg)
    assert r.status_code == 201, r.text
    assert int(r.headers["Upload-Offset"]) == size and r.headers["Location"].startswith("/v1/uploads/")
    assert r.json()["duplicate"] is False
    check_receipt(backend, r.json(), seg)
    stored = backend.data / "store" / "devices" / "BC-ONE-1" / "segments"
    assert hashlib.sha256((stored / "seg-0000000001.mp4").read_bytes()).hexdigest() == seg.sha256
    assert (stored / "seg-0000000001.json").read_bytes() == seg.manifest.read_bytes()
    assert (stored / "seg-0000000001.sig").read_bytes() == seg.signature.read_bytes()
    # the same request again (the answer was lost): the same receipt, nothing stored twice
    before = store_files(backend)
    again = dev.create_whole(seg)
    assert again.status_code == 201 and again.json()["duplicate"] is True
    assert again.json()["receipt"] == r.json()["receipt"] and store_files(backend) == before
    # and the finalize endpoint agrees, for the upload the creation made
    assert dev.finalize(r.headers["Location"], seg).json()["receipt"] == r.json()["receipt"]

    # bytes that do not match the declared sha256 are not kept, and nothing is flagged: the device
    # sends them again in checksummed PATCHes and finalize decides
    media = bytearray(seg2.media.read_bytes())
    media[len(media) // 2] ^= 0x01
    torn = dev.create_whole(seg2, media=bytes(media))
    assert torn.status_code == 201 and int(torn.headers["Upload-Offset"]) == 0
    assert not torn.content, "no receipt for bytes that were not kept"
    assert int(dev.head(torn.headers["Location"]).headers["Upload-Offset"]) == 0
    assert admin.get(backend.url + "/v1/flags", params={"device": "BC-ONE-1"}).json()["flags"] == []
    assert dev.patch(torn.headers["Location"], 0, seg2.media.read_bytes()).status_code == 204
    assert dev.finalize(torn.headers["Location"], seg2).status_code == 200

    # a manifest that does not verify is rejected and flagged, as at finalize
    seg3 = segments_of(rig)[2]
    forged = dev.create_whole(seg3, signature=seg.signature.read_bytes())
    assert forged.status_code == 422 and forged.json()["reason"] == "bad_signature"
    flags = admin.get(backend.url + "/v1/flags", params={"device": "BC-ONE-1"}).json()["flags"]
    assert [(f["sequence"], f["reason"]) for f in flags] == [(seg3.sequence, "bad_signature")]
    half = dev.create(seg3, extra_meta={"manifest": seg3.manifest.read_bytes()})
    assert half.status_code == 400 and "'signature'" in half.json()["message"]
    assert dev.create_whole(seg3).status_code == 201


def test_flipped_byte_is_rejected_with_a_reason_and_flagged(backend, admin, tmp_path) -> None:
    rig = record(tmp_path, "BC-FLIP-1", after=5)
    dev = enrolled_device(backend, rig)
    seg = segments_of(rig)[0]
    media = bytearray(seg.media.read_bytes())
    media[len(media) // 2] ^= 0x01
    before = store_files(backend)
    r = dev.upload(seg, media=bytes(media))
    assert r.status_code == 422, r.text
    body = r.json()
    assert (
        body["error"] == "rejected"
        and body["reason"] == "media_hash_mismatch"
        and "SHA-256" in body["message"]
    )
    tampered = bytearray(seg.manifest.read_bytes())
    at = tampered.index(b'"frame_count": ') + 15
    tampered[at] = (
        ord("9") if tampered[at] != ord("9") else ord("8")
    )  # claim other frames in the signed manifest
    r2 = dev.upload(seg, manifest=bytes(tampered))
    assert r2.status_code == 422 and r2.json()["reason"] == "bad_signature"
    r3 = dev.upload(seg, signature=b"")
    assert r3.status_code == 422 and r3.json()["reason"] == "unsigned"
    assert store_files(backend) == before, "nothing of a rejected segment is stored"
    flags = admin.get(backend.url + "/v1/flags", params={"device": "BC-FLIP-1"}).json()["flags"]
    assert [f["reason"] for f in flags] == ["media_hash_mismatch", "bad_signature", "unsigned"]
    assert flags[0]["id"] == body["flag_id"]
    good = dev.upload(seg)  # the real segment is still accepted afterwards
    assert good.status_code == 200, good.text


def test_gap_is_recorded_then_closed_when_the_missing_segment_arrives(backend, admin, tmp_path) -> None:
    rig = record(tmp_path, "BC-GAP-1", after=75)
    dev = enrolled_device(backend, rig)
    segs = segments_of(rig)
    assert len(segs) >= 4
    assert dev.upload(segs[0]).json()["gaps"] == []
    r = dev.upload(segs[3])
    assert r.status_code == 200 and r.json()["gaps"] == [2, 3]
    gaps = admin.get(backend.url + "/v1/gaps", params={"device": "BC-GAP-1", "open": "1"}).json()["gaps"]
    assert [g["sequence"] for g in gaps] == [2, 3]
    assert dev.upload(segs[2]).json()["gaps"] == [2]  # links up to 4 (checked) and closes 3
    assert dev.upload(segs[1]).json()["gaps"] == []
    closed = admin.get(backend.url + "/v1/gaps", params={"device": "BC-GAP-1"}).json()["gaps"]
    assert all(g["closed_utc"] for g in closed) and len(closed) == 2


def test_malformed_and_oversized_tus_requests_get_clear_4xx_and_store_nothing(backend, tmp_path) -> None:
    rig = record(tmp_path, "BC-BAD-1", after=5)
    dev = enrolled_device(backend, rig)
    seg = segments_of(rig)[0]
    before_store, before_staged = store_files(backend), set((backend.data / "uploads").iterdir())

    opts = requests.options(backend.url + "/v1/uploads")
    assert opts.status_code == 204 and "creation" in opts.headers["Tus-Extension"]
    assert opts.headers["Tus-Max-Size"] == "4000000"
    big = dev.create(seg, length=4_000_001)
    assert big.status_code == 413 and big.json()["error"] == "upload_too_large"
    no_version = dev.create(seg, headers={"Tus-Resumable": ""})
    assert no_version.status_code == 412 and no_version.json()["error"] == "tus_version"
    assert no_version.headers["Tus-Version"] == "1.0.0"
    no_kind = dev.request(
        "POST", "/v1/uploads", headers={**TUS, "Upload-Length": "10", "Upload-Metadata": "x !!"}
    )
    assert no_kind.status_code == 400 and no_kind.json()["error"] == "bad_metadata"
    no_len = dev.request("POST", "/v1/uploads", headers={**TUS, "Upload-Metadata": "kind c2VnbWVudA=="})
    assert no_len.status_code == 400 and "Upload-Length" in no_len.json()["message"]
    assert set((backend.data / "uploads").iterdir()) == before_staged, "refused creations stage nothing"

    loc = dev.create(seg).headers["Location"]
    data = seg.media.read_bytes()
    bad_type = dev.request(
        "PATCH", loc, headers={**TUS, "Upload-Offset": "0", "Content-Type": "text/plain"}, data=data[:10]
    )
    assert bad_type.status_code == 415 and bad_type.json()["error"] == "bad_content_type"
    wrong_offset = dev.patch(loc, 7, data[:10])
    assert wrong_offset.status_code == 409 and wrong_offset.json()["offset"] == 0
    missing_version = dev.request(
        "PATCH",
        loc,
        headers={"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"},
        data=data[:10],
    )
    assert missing_version.status_code == 412
    too_long = dev.patch(loc, 0, data + b"extra")
    assert too_long.status_code == 413
    bad_sum = dev.patch(
        loc, 0, data[:100], **{"Upload-Checksum": "sha1 " + base64.b64encode(b"0" * 20).decode()}
    )
    assert bad_sum.status_code == 460
    assert int(dev.head(loc).headers["Upload-Offset"]) == 0, "nothing appended by refused PATCHes"
    # creation-with-upload: a sha256 checksum of the first chunk is checked too (it is the running hash)
    octets = {"Content-Type": "application/offset+octet-stream"}
    wrong = dev.create(seg, data=data, headers={**octets, "Upload-Checksum": "sha256 " + base64.b64encode(
        hashlib.sha256(b"not the media").digest()).decode()})
    assert wrong.status_code == 460 and wrong.json()["error"] == "checksum_mismatch"
    assert len(set((backend.data / "uploads").iterdir())) == len(before_staged) + 1, "only loc is staged"
    right = dev.create(seg, data=data, headers={**octets, "Upload-Checksum": "sha256 " + base64.b64encode(
        hashlib.sha256(data).digest()).decode()})
    assert right.status_code == 201 and int(right.headers["Upload-Offset"]) == len(data)
    assert dev.request("DELETE", right.headers["Location"], headers=TUS).status_code == 204
    early = dev.finalize(loc, seg)
    assert early.status_code == 409 and "incomplete" in early.json()["message"]
    other = Device(backend.url, rig.signer, "BC-BAD-1")
    assert other.request("HEAD", "/v1/uploads/../../etc", headers=TUS).status_code == 404
    assert dev.request("DELETE", loc, headers=TUS).status_code == 204
    assert dev.head(loc).status_code == 410
    assert store_files(backend) == before_store
    for resp in (big, no_kind, bad_type, wrong_offset, too_long):
        assert set(resp.json()) >= {"error", "message", "status"}


def test_people_need_accounts_and_every_view_and_download_is_in_the_audit_trail(
    backend, admin, tmp_path
) -> None:
    rig = record(tmp_path, "BC-VIEW-1", after=5)
    dev = enrolled_device(backend, rig)
    seg = segments_of(rig)[0]
    assert dev.upload(seg).status_code == 200
    assert requests.get(backend.url + "/v1/devices").status_code == 401
    assert (
        requests.get(backend.url + "/v1/devices", headers={"Authorization": "Bearer bcp_nope"}).status_code
        == 401
    )
    assert (
        requests.get(backend.url + "/v1/devices", headers=dev.headers("GET", "/v1/devices")).status_code
        == 401
    )
    viewer = people(backend, backend.admin_token("vic", "reviewer"))
    devices = viewer.get(backend.url + "/v1/devices").json()["devices"]
    assert any(d["serial"] == "BC-VIEW-1" and d["status"] == "active" for d in devices)
    recs = viewer.get(backend.url + "/v1/recordings", params={"device": "BC-VIEW-1"}).json()["recordings"]
    rid = recs[0]["recording_id"]
    assert viewer.get(f"{backend.url}/v1/recordings/{rid}").json()["segments"][0]["sequence"] == 1
    media = viewer.get(f"{backend.url}/v1/segments/BC-VIEW-1/1/media")
    assert media.status_code == 200 and media.content == seg.media.read_bytes()
    assert media.headers["Bodycam-SHA256"] == seg.sha256
    assert viewer.get(f"{backend.url}/v1/segments/BC-VIEW-1/1/manifest").content == seg.manifest.read_bytes()
    assert viewer.post(f"{backend.url}/v1/devices/BC-VIEW-1/enrol-token").status_code == 403
    assert viewer.get(f"{backend.url}/v1/audit").status_code == 403
    entries = admin.get(backend.url + "/v1/audit", params={"limit": 10000}).json()["entries"]
    docs = [json.loads(e["entry"]) for e in entries]
    mine = [(d["actor"], d["action"], d["target"]) for d in docs if d["actor"] == "person:vic"]
    assert ("person:vic", "view", f"recording:{rid}") in mine
    assert ("person:vic", "download", "segment:BC-VIEW-1/0000000001") in mine
    assert sum(1 for a in mine if a[1] == "download") == 2
    assert any(d["action"] == "ingest" and d["actor"] == "device:BC-VIEW-1" for d in docs)
    check = admin.get(backend.url + "/v1/audit/verify").json()
    assert check["ok"] and check["entries"] >= len(entries), check
    assert verify_lines(entries, backend.backend_public_pem()).ok
    cli = backend.cli("audit-verify")
    assert "OK" in cli.stdout


def test_device_audit_log_upload_is_verified_and_chained(backend, tmp_path) -> None:
    rig = record(tmp_path, "BC-AUD-1", after=5)
    dev = enrolled_device(backend, rig)
    log = AuditLog(rig.layout.audit_log, signer=rig.signer, clock=rig.clock, boot_id="boot-1")
    for i in range(3):
        log.append("marker", n=i)

    def send(data: bytes) -> requests.Response:
        path = tmp_path / "chunk.log"
        path.write_bytes(data)
        from backendkit import Segment

        r = dev.create(Segment(0, path), kind="audit", length=len(data))
        assert r.status_code == 201, r.text
        assert dev.patch(r.headers["Location"], 0, data).status_code == 204
        return dev.finalize(r.headers["Location"])

    lines = rig.layout.audit_log.read_bytes().splitlines(keepends=True)
    first = send(b"".join(lines[:2]))
    assert first.status_code == 200 and json.loads(first.json()["receipt"])["entries_new"] == 2
    log.append("marker", n=3)
    lines = rig.layout.audit_log.read_bytes().splitlines(keepends=True)
    second = send(b"".join(lines))  # overlaps: stored entries are skipped, new ones chained on
    assert second.status_code == 200 and json.loads(second.json()["receipt"])["entries_new"] == 2
    forged = json.loads(lines[-1])
    forged["entry"] = forged["entry"].replace('"n":3', '"n":4')
    bad = send(b"".join(lines[:-1]) + json.dumps(forged).encode() + b"\n")
    assert bad.status_code == 422 and bad.json()["reason"] == "bad_signature"
    status = dev.request("GET", "/v1/device/status").json()
    assert status["audit_last_seq"] == 4


def test_export_bundle_verifies_offline_with_bodycam_verify(backend, admin, tmp_path) -> None:
    rig = record(tmp_path / "dev", "BC-EXP-1", after=45)
    log = AuditLog(rig.layout.audit_log, signer=rig.signer, clock=rig.clock, boot_id="boot-1")
    log.append("power_on")
    for seg in segments_of(rig):
        m = json.loads(seg.manifest.read_bytes())
        log.append(
            "segment_sealed",
            recording_id=m["recording_id"],
            sequence=seg.sequence,
            segment_index=m["segment_index"],
            frames=m["frame_count"],
            bytes=m["media"]["size"],
            media_sha256=m["media"]["sha256"],
        )
    dev = enrolled_device(backend, rig)
    for seg in segments_of(rig):
        assert dev.upload(seg).status_code == 200
    data = rig.layout.audit_log.read_bytes()
    r = dev.create(segments_of(rig)[0], kind="audit", length=len(data))
    dev.patch(r.headers["Location"], 0, data)
    assert dev.finalize(r.headers["Location"]).status_code == 200
    rid = json.loads(segments_of(rig)[0].manifest.read_bytes())["recording_id"]
    out = tmp_path / "bundle"
    ex = backend.cli("export", rid, "--out", str(out))
    assert "exported" in ex.stdout
    names = sorted(p.name for p in out.iterdir())
    assert "README.md" in names and "audit.log" in names and "BC-EXP-1.cert.pem" in names
    readme = (out / "README.md").read_text()
    seqs = [s.sequence for s in segments_of(rig)]
    assert f"Device `BC-EXP-1`, {len(seqs)} segments (sequences {seqs[0]}-{seqs[-1]}), " in readme
    assert "[{" not in readme and "'sequence'" not in readme
    stock = readme.split("```sh\n")[2].split("```")[0]  # the bundle's own stock-tool check, as printed
    checked = subprocess.run(["bash", "-c", stock], cwd=out, capture_output=True, text=True)
    # judged by its failure lines: a SHA-256 in hex contains "bad" about one time in seventy
    assert checked.stdout.endswith("done\n") and "bad signature:" not in checked.stdout
    assert "media altered:" not in checked.stdout
    assert len([n for n in names if n.endswith(".mp4")]) == len(segments_of(rig))
    v = subprocess.run(
        [sys.executable, "-m", "bodycam.cli", "verify", str(out), "--key", str(out / "BC-EXP-1.cert.pem")],
        capture_output=True,
        text=True,
    )
    assert v.returncode == 0, v.stdout + v.stderr
    assert "verify: OK" in v.stdout
    trail = [json.loads(line) for line in (out / "backend" / "audit-trail.jsonl").read_text().splitlines()]
    assert {json.loads(t["entry"])["action"] for t in trail} >= {"ingest", "export"}
    assert verify_lines(trail, (out / "backend" / "backend.pub.pem").read_bytes(), complete=False).ok
    for line in (out / "backend" / "receipts.jsonl").read_text().splitlines():
        rec = json.loads(line)
        verify_receipt(rec["receipt"], rec["signature"], (out / "backend" / "backend.pub.pem").read_bytes())
    ca = subprocess.run(
        ["openssl", "verify", "-CAfile", out / "backend" / "agency-ca.pem", out / "BC-EXP-1.cert.pem"],
        capture_output=True,
        text=True,
    )
    assert ca.returncode == 0
    # a flipped byte in the bundle fails verification
    media = out / names[[n.endswith(".mp4") for n in names].index(True)]
    media.chmod(0o644)
    b = bytearray(media.read_bytes())
    b[100] ^= 1
    media.write_bytes(bytes(b))
    v2 = subprocess.run(
        [sys.executable, "-m", "bodycam.cli", "verify", str(out)], capture_output=True, text=True
    )
    assert v2.returncode == 1


# ---------------------------------------------------------------------------- refusals a device can cause

def resigned(rig, seg, **changes) -> tuple[bytes, bytes]:
    """The segment's manifest with ``changes``, signed for real with the device's own key: everything a
    signature check can see is right, so only the check under test can refuse it."""
    doc = json.loads(seg.manifest.read_bytes())
    doc.update(changes)
    raw = (json.dumps(doc, indent=2) + "\n").encode()
    return raw, rig.signer.sign(raw)


def flags_of(admin, backend, serial: str) -> list[tuple[int, str]]:
    flags = admin.get(backend.url + "/v1/flags", params={"device": serial}).json()["flags"]
    return [(f["sequence"], f["reason"]) for f in flags]


def stored_sequences(backend, serial: str) -> list[int]:
    seg_dir = backend.data / "store" / "devices" / serial / "segments"
    return sorted(int(p.stem[4:]) for p in seg_dir.glob("seg-*.json")) if seg_dir.exists() else []


def test_a_broken_chain_is_refused_and_flagged_from_either_side(backend, admin, tmp_path) -> None:
    rig = record(tmp_path, "BC-CHAIN-1", after=45)
    dev = enrolled_device(backend, rig)
    s1, s2, s3 = segments_of(rig)[:3]
    # sequence 1 must link to the genesis value
    manifest, sig = resigned(rig, s1, previous_manifest_sha256="ab" * 32)
    r = dev.upload(s1, manifest=manifest, signature=sig)
    assert r.status_code == 422 and r.json()["reason"] == "chain_broken", r.text
    assert "genesis" in r.json()["message"]
    assert dev.upload(s1).status_code == 200
    # a sequence 2 that does not link to the stored sequence 1 (the one below)
    manifest, sig = resigned(rig, s2, previous_manifest_sha256=hashlib.sha256(b"another manifest").hexdigest())
    r = dev.upload(s2, manifest=manifest, signature=sig)
    assert r.status_code == 422 and r.json()["reason"] == "chain_broken", r.text
    assert "sequence 2 does not link to the stored manifest of sequence 1" in r.json()["message"]
    # the stored sequence 3 does not link to a replaced sequence 2 (the one above)
    assert dev.upload(s3).json()["gaps"] == [2]
    manifest, sig = resigned(rig, s2, officer_id="PC-0000")
    r = dev.upload(s2, manifest=manifest, signature=sig)
    assert r.status_code == 422 and r.json()["reason"] == "chain_broken", r.text
    assert "stored sequence 3 does not link" in r.json()["message"]
    assert stored_sequences(backend, "BC-CHAIN-1") == [1, 3], "nothing of a refused segment is stored"
    assert flags_of(admin, backend, "BC-CHAIN-1") == [(1, "chain_broken"), (2, "chain_broken"),
                                                      (2, "chain_broken")]
    assert dev.upload(s2).json()["gaps"] == []    # the real one links both ways and closes the gap
    assert stored_sequences(backend, "BC-CHAIN-1") == [1, 2, 3]


def test_a_second_manifest_for_a_stored_sequence_is_a_409_conflict(backend, admin, tmp_path) -> None:
    rig = record(tmp_path, "BC-CONFLICT-1", after=5)
    dev = enrolled_device(backend, rig)
    seg = segments_of(rig)[0]
    first = dev.upload(seg)
    assert first.status_code == 200
    stored = backend.data / "store" / "devices" / "BC-CONFLICT-1" / "segments" / "seg-0000000001.json"
    before = stored.read_bytes()
    manifest, sig = resigned(rig, seg, end_reason="max_length")   # same media, same key, other statement
    r = dev.upload(seg, manifest=manifest, signature=sig)
    assert r.status_code == 409 and r.json()["error"] == "conflict", r.text
    assert r.json()["reason"] == "sequence_conflict" and "different manifest" in r.json()["message"]
    assert stored.read_bytes() == before == seg.manifest.read_bytes(), "the stored manifest is untouched"
    assert flags_of(admin, backend, "BC-CONFLICT-1") == [(1, "sequence_conflict")]
    again = dev.upload(seg)                         # the real one is still a duplicate with its receipt
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert again.json()["receipt"] == first.json()["receipt"]


def test_a_segment_of_another_device_or_sequence_is_refused(backend, admin, tmp_path) -> None:
    mine = record(tmp_path / "mine", "BC-OWN-1", after=25)
    theirs = record(tmp_path / "theirs", "BC-OWN-2", after=5)
    dev = enrolled_device(backend, mine)
    enrolled_device(backend, theirs)                # enrolled, but it is not who is uploading
    r = dev.upload(segments_of(theirs)[0])
    assert r.status_code == 422 and r.json()["reason"] == "wrong_device", r.text
    assert "'BC-OWN-2'" in r.json()["message"] and "'BC-OWN-1'" in r.json()["message"]
    s1, s2 = segments_of(mine)[:2]
    created = dev.create(s1)                        # created for sequence 1, finalized with 2's manifest
    assert dev.patch(created.headers["Location"], 0, s1.media.read_bytes()).status_code == 204
    r = dev.finalize(created.headers["Location"], s2)
    assert r.status_code == 422 and r.json()["reason"] == "sequence_mismatch", r.text
    r = dev.upload(s1, manifest=b"{not a manifest")
    assert r.status_code == 422 and r.json()["reason"] == "bad_manifest", r.text
    assert stored_sequences(backend, "BC-OWN-1") == stored_sequences(backend, "BC-OWN-2") == []
    assert [why for _, why in flags_of(admin, backend, "BC-OWN-1")] == ["wrong_device", "sequence_mismatch",
                                                                        "bad_manifest"]


def test_media_of_another_size_than_the_manifest_says_is_refused(backend, admin, tmp_path) -> None:
    rig = record(tmp_path, "BC-SIZE-1", after=5)
    dev = enrolled_device(backend, rig)
    seg = segments_of(rig)[0]
    data = seg.media.read_bytes()
    for media in (data + b"\0" * 7, data[:-7]):
        r = dev.upload(seg, media=media)
        assert r.status_code == 422 and r.json()["reason"] == "media_size_mismatch", r.text
        assert f"is {len(media)} bytes, the signed manifest says {len(data)}" in r.json()["message"]
    assert stored_sequences(backend, "BC-SIZE-1") == []
    assert flags_of(admin, backend, "BC-SIZE-1") == [(1, "media_size_mismatch")] * 2
    assert dev.upload(seg).status_code == 200


def audit_line(signer, entry: dict) -> bytes:
    """One audit line exactly as the device writes it (docs/format.md section 7), signed for real."""
    text = json.dumps(entry, separators=(",", ":"), sort_keys=True)
    sig = base64.b64encode(signer.sign(text.encode())).decode()
    return (json.dumps({"entry": text, "sig": sig}, separators=(",", ":")) + "\n").encode()


def test_device_audit_uploads_are_refused_for_each_documented_reason(backend, admin, tmp_path) -> None:
    from backendkit import Segment
    from bodycam.evidence.signer import generate_key

    rig = record(tmp_path, "BC-AUDREF-1", after=5)
    dev = enrolled_device(backend, rig)
    log = AuditLog(rig.layout.audit_log, signer=rig.signer, clock=rig.clock, boot_id="boot-1")
    for i in range(6):
        log.append("marker", n=i)
    lines = rig.layout.audit_log.read_bytes().splitlines(keepends=True)
    entries = [json.loads(json.loads(line)["entry"]) for line in lines]

    def send(data: bytes) -> requests.Response:
        path = tmp_path / "chunk.log"
        path.write_bytes(data)
        r = dev.create(Segment(0, path), kind="audit", length=len(data))
        assert r.status_code == 201, r.text
        assert dev.patch(r.headers["Location"], 0, data).status_code == 204
        return dev.finalize(r.headers["Location"])

    def refused(r: requests.Response, status: int, reason: str, says: str) -> None:
        assert r.status_code == status and r.json()["reason"] == reason, r.text
        assert says in r.json()["message"], r.json()["message"]

    assert send(b"".join(lines[:2])).status_code == 200
    refused(send(b"".join(lines[2:4])[:-1]), 422, "bad_audit", "whole lines")          # torn: no newline
    refused(send(lines[2] + lines[4]), 422, "chain_broken", "does not follow seq 3")   # seq 4 left out
    stranger = generate_key(tmp_path / "other.pem")
    refused(send(audit_line(stranger, {**entries[2], "key_id": stranger.key_id})), 422, "unknown_key",
            "not enrolled for BC-AUDREF-1")
    refused(send(audit_line(rig.signer, {**entries[1], "data": {"n": 99}})), 409, "audit_conflict",
            "audit seq 2 is already stored with different text")
    refused(send(audit_line(rig.signer, {**entries[2], "prev": "ab" * 32})), 422, "chain_broken",
            "audit seq 3 does not link to the stored seq 2")
    status = dev.request("GET", "/v1/device/status").json()
    assert status["audit_last_seq"] == 2, "nothing of a refused upload is kept"
    # entries 3-4 lost on the device: 5-6 are kept, and the hole is flagged for a person to look at
    r = send(b"".join(lines[4:6]))
    assert r.status_code == 200 and json.loads(r.json()["receipt"])["entries_new"] == 2
    assert dev.request("GET", "/v1/device/status").json()["audit_last_seq"] == 6
    flags = admin.get(backend.url + "/v1/flags", params={"device": "BC-AUDREF-1"}).json()["flags"]
    assert [f["reason"] for f in flags] == ["bad_audit", "chain_broken", "unknown_key", "audit_conflict",
                                            "chain_broken", "audit_gap"]
    assert "entries 3-4 never reached the backend" in flags[-1]["message"]


def test_the_recordings_list_comes_a_page_at_a_time_newest_first(backend, tmp_path) -> None:
    mine = []
    for serial in ("BC-PAGE-1", "BC-PAGE-2"):
        rig = record(tmp_path / serial, serial, after=3)
        dev = enrolled_device(backend, rig)
        assert dev.upload(segments_of(rig)[0]).status_code == 200
        mine.append(serial)
    viewer = people(backend, backend.admin_token("pat", "reviewer"))
    # the backend may hold other tests' recordings too: the checks are relative to what it holds
    whole = viewer.get(backend.url + "/v1/recordings", params={"per_page": 1000}).json()
    total, listed = whole["total"], whole["recordings"]
    assert total == len(listed) >= 2 and whole["page"] == 1 and whole["per_page"] == 1000
    assert {r["device_serial"] for r in listed} >= set(mine)
    firsts = [r["first_utc"] for r in listed]
    assert firsts == sorted(firsts, reverse=True)
    default = viewer.get(backend.url + "/v1/recordings").json()
    assert default["per_page"] == 100 and len(default["recordings"]) == min(total, 100)
    pages = [viewer.get(backend.url + "/v1/recordings", params={"per_page": 1, "page": n}).json()
             for n in range(1, total + 2)]
    assert [len(p["recordings"]) for p in pages] == [1] * total + [0] and {p["total"] for p in pages} == {total}
    assert [p["recordings"][0]["recording_id"] for p in pages[:total]] == [r["recording_id"] for r in listed]
    for serial in mine:
        one = viewer.get(backend.url + "/v1/recordings", params={"device": serial}).json()
        assert one["total"] == 1 and one["recordings"][0]["device_serial"] == serial
    for bad in ({"per_page": 0}, {"per_page": 1001}, {"page": "x"}):
        r = viewer.get(backend.url + "/v1/recordings", params=bad)
        assert r.status_code == 400 and "give a whole number" in r.json()["message"], r.text
