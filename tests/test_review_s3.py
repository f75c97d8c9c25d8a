"""The review pages on the S3 Object Lock store (a real SeaweedFS on 127.0.0.1): footage plays and
checks as on the directory store, an extension raises each object's COMPLIANCE retain-until date, and
the retention job cannot delete what Object Lock still holds (it says so and keeps the recording)."""

from __future__ import annotations

import datetime as dt

import pytest
from backendkit import BackendProcess
from reviewkit import csrf_of, seed, signed_in
from test_backend_s3 import CREDS, s3_client, seaweed  # noqa: F401 - the module's SeaweedFS fixture

pytestmark = pytest.mark.slow


def test_review_on_the_object_lock_store(seaweed, tmp_path) -> None:  # noqa: F811
    backend = BackendProcess(tmp_path / "backend", storage={"backend": "s3"}, s3={
        "endpoint_url": seaweed, "bucket": "bodycam-review", "create_bucket": True, "retention_days": 30,
        "access_key_id": CREDS["aws_access_key_id"], "secret_access_key": CREDS["aws_secret_access_key"]})
    backend.cli("init")
    backend.start()
    try:
        s = seed(backend, tmp_path)
        url = backend.url
        one, two = s.recordings["BC-REV-0001"], s.recordings["BC-REV-0002"]
        sam = signed_in(url, "sam")
        media = sam.get(f"{url}/recordings/{one}/segments/2/media")
        assert media.status_code == 200 and media.content == s.segments["BC-REV-0001"][1].media.read_bytes()
        assert sam.get(f"{url}/recordings/{one}/integrity").json()["ok"] is True
        assert sam.get(f"{url}/recordings/{one}/thumbnail.jpg").headers["content-type"] == "image/jpeg"
        token = csrf_of(sam.get(url + "/recordings").text)
        r = sam.post(f"{url}/recordings/{one}/retention", data={"csrf": token, "until": "2040-01-01"},
                     allow_redirects=False)
        assert r.status_code == 303
        client = s3_client(seaweed)
        for seq in range(1, len(s.segments["BC-REV-0001"]) + 1):
            for ext in ("mp4", "json", "sig"):
                key = f"devices/BC-REV-0001/segments/seg-{seq:010d}.{ext}"
                ret = client.get_object_retention(Bucket="bodycam-review", Key=key)["Retention"]
                assert ret["Mode"] == "COMPLIANCE"
                assert ret["RetainUntilDate"] >= dt.datetime(2040, 1, 2, tzinfo=dt.UTC), (key, ret)
        # the backend's promise for the uncategorised one is over; the store's 30-day lock is not
        out = backend.cli("retention", "run").stdout
        assert f"kept {two}" in out and "the store's Object Lock holds it until" in out, out
        assert "deleted 0 recordings" in out, out
        # kept without asking the store to delete what it must refuse: no delete (or refusal) in the trail
        trail = signed_in(url, "aud").get(url + "/audit?format=json").json()["entries"]
        assert not [e for e in trail if e["action"] in ("delete", "delete_refused")], trail[:3]
        assert sam.get(f"{url}/recordings/{two}/integrity").json()["ok"] is True
        assert sam.get(f"{url}/recordings/{two}/segments/1/media").content == \
            s.segments["BC-REV-0002"][0].media.read_bytes()
    finally:
        backend.stop()
