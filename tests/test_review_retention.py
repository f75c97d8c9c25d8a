"""Categories, retention, cases and notes from the review pages, and `bodycam backend retention run`,
against a real backend process with real uploaded segments (recorded on the rig's clock, November 2025,
so the 31-day uncategorised default is long past)."""

from __future__ import annotations

import json
import re

import pytest
import requests
from backendkit import BackendProcess, enrolled_device, segments_of
from reviewkit import csrf_of, record_with_marker, seed, signed_in

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("review-retention")
    backend = BackendProcess(tmp / "backend")
    backend.start()
    try:
        s = seed(backend, tmp)
        rig = record_with_marker(tmp / "BC-REV-0003", "BC-REV-0003", officer="nobody")
        dev = enrolled_device(backend, rig)
        for seg in segments_of(rig):
            assert dev.upload(seg).status_code == 200
        s.recordings["BC-REV-0003"] = "BC-REV-0003-0000000001"
        yield s
    finally:
        backend.stop()


def tmp_path_of(b: BackendProcess):
    return b.root


def check_case_export(s, url: str, tmp, rids: list[str]) -> None:
    import subprocess
    import sys
    import zipfile

    r = s.get(f"{url}/cases/01YE1234525/export.zip")
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    (tmp / "case.zip").write_bytes(r.content)
    with zipfile.ZipFile(tmp / "case.zip") as z:
        z.extractall(tmp / "case")
    for rid in rids:
        bundle = tmp / "case" / "01YE1234525" / rid
        serial = rid.rsplit("-", 1)[0]
        v = subprocess.run([sys.executable, "-m", "bodycam.cli", "verify", str(bundle), "--key",
                            str(bundle / f"{serial}.cert.pem")], capture_output=True, text=True, timeout=120)
        assert v.returncode == 0 and v.stdout.startswith("verify: OK"), v.stdout + v.stderr


def post(s, url: str, path: str, **data):
    token = csrf_of(s.get(url + "/recordings").text)
    return s.post(url + path, data={"csrf": token, **data}, allow_redirects=False)


def detail(s, url: str, rid: str) -> dict:
    return s.get(f"{url}/recordings/{rid}?format=json").json()


def test_categories_cases_notes_and_the_retention_job(seeded) -> None:
    b, url = seeded.backend, seeded.backend.url
    one, two, three = (seeded.recordings[k] for k in ("BC-REV-0001", "BC-REV-0002", "BC-REV-0003"))
    assert b.cli("category", "add", "Evidence - crime", "--days", "2555").stdout.startswith("category")
    dup = b.cli("category", "add", "Evidence - crime", "--days", "1", check=False)
    assert dup.returncode == 2 and "exists already" in dup.stderr
    assert "Uncategorised\t31 days" in b.cli("category", "list").stdout
    rita, sam = signed_in(url, "rita"), signed_in(url, "sam")
    assert detail(rita, url, one)["retention"]["keep_until_utc"].startswith("2025-12-22")  # end + 31 days
    # a reviewer categorises and puts one in a case; the promise follows the longest category
    assert post(rita, url, f"/recordings/{one}/categories", category="Evidence - crime").status_code == 303
    r1 = detail(rita, url, one)["retention"]
    assert r1["categories"] == ["Evidence - crime"] and r1["keep_until_utc"].startswith("2032-11-")
    assert post(rita, url, f"/recordings/{one}/categories", category="nonsense").status_code == 400
    assert post(rita, url, f"/recordings/{two}/cases", case="01YE1234525", title="Op Test").status_code == 303
    assert detail(rita, url, two)["retention"]["held_by_cases"] == ["01YE1234525"]
    assert post(rita, url, f"/recordings/{two}/notes", text="seen: suspect at 04:40:03").status_code == 303
    assert detail(rita, url, two)["retention"]["notes"][0]["text"] == "seen: suspect at 04:40:03"
    # extension: supervisors and admins only, and only later
    assert post(rita, url, f"/recordings/{two}/retention", until="2040-01-01").status_code == 403
    assert post(sam, url, f"/recordings/{two}/retention", until="2040-01-01").status_code == 303
    assert detail(sam, url, two)["retention"]["keep_until_utc"].startswith("2040-01-02")
    short = post(sam, url, f"/recordings/{two}/retention", until="2030-01-01")
    assert short.status_code == 400 and "can only be extended" in short.text
    assert post(sam, url, f"/recordings/{two}/retention").status_code == 400
    assert post(rita, url, f"/recordings/{three}/cases", case="../x").status_code == 400
    # the case page, its export (each bundle verifies offline) and a view-only link to the whole case
    assert post(rita, url, f"/recordings/{one}/cases", case="01YE1234525").status_code == 303
    case = rita.get(f"{url}/cases/01YE1234525?format=json").json()
    assert case["title"] == "Op Test" and sorted(r["recording_id"] for r in case["recordings"]) == sorted([one, two])
    olly = signed_in(url, "olly")
    assert [r["recording_id"] for r in olly.get(f"{url}/cases/01YE1234525?format=json").json()["recordings"]] == [one]
    assert olly.get(f"{url}/cases/01YE1234525/export.zip").status_code == 403
    check_case_export(rita, url, tmp_path_of(b), [one, two])
    assert post(rita, url, "/cases/01YE1234525/shares", days="3").status_code == 403
    made = post(sam, url, "/cases/01YE1234525/shares", days="3", note="CPS")
    link = re.search(r'id="share-link" value="([^"]+)"', made.text).group(1)
    guest = requests.Session()
    landing = guest.get(link)
    assert landing.status_code == 200 and one in landing.text and two in landing.text
    token = link.rsplit("/", 1)[1]
    assert guest.get(f"{url}/s/{token}/r/{three}").status_code == 404  # not in the case
    assert guest.get(f"{url}/s/{token}/r/{one}/segments/1/media").content[4:8] == b"ftyp"
    assert guest.get(f"{url}/s/{token}/r/{one}/segments/1/media?download=1").headers.get(
        "content-disposition") is None  # view-only: never offered as a download
    page = sam.get(f"{url}/cases/01YE1234525").text
    assert re.search(r"<title>([^<]*)</title>", page).group(1) == "Case 01YE1234525 - bodycam review"
    assert page.count('id="share-form"') == 1 and page.count('id="shares"') == 1
    public_id = re.search(r'data-share="([0-9a-f]+)"', page).group(1)
    assert post(sam, url, f"/shares/{public_id}/revoke").status_code == 303
    assert guest.get(link).status_code == 410
    # the list filters by category and case
    ids = lambda q: [x["recording_id"] for x in rita.get(f"{url}/recordings?format=json&{q}").json()["recordings"]]  # noqa: E731
    assert ids("category=Evidence+-+crime") == [one]
    assert sorted(ids("category=Uncategorised")) == sorted([two, three])
    assert sorted(ids("case=01YE1234525")) == sorted([one, two])
    # dry run: only the uncategorised, unheld, unextended recording would go
    dry = b.cli("retention", "run", "--dry-run").stdout
    assert f"would delete {three}" in dry and one not in dry and two not in dry
    assert "would delete 1 recording," in dry
    store = b.data / "store" / "devices" / "BC-REV-0003" / "segments"
    assert len(list(store.glob("*.mp4"))) == 3
    # the case is closed: still kept, because its retention was extended
    assert post(sam, url, f"/recordings/{two}/cases/01YE1234525/close").status_code == 303
    assert detail(sam, url, two)["retention"]["held_by_cases"] == []
    out = b.cli("retention", "run").stdout
    assert re.search(rf"^deleted {three} \(kept until 2025-12-22T", out, re.M), out
    assert "deleted 1 recording," in out and one not in out and two not in out
    assert list(store.glob("seg-*")) == []
    assert len(list((b.data / "store" / "devices" / "BC-REV-0002" / "segments").glob("*.mp4"))) == 3
    gone = rita.get(f"{url}/recordings/{three}")
    assert gone.status_code == 410 and "deleted by the retention job" in gone.text
    assert three not in ids("")
    assert "deleted 0 recordings" in b.cli("retention", "run").stdout
    # everything above is in the audit trail
    token = b.admin_token("ret-auditor", "auditor")
    entries = requests.get(url + "/v1/audit", params={"limit": 10000},
                           headers={"Authorization": f"Bearer {token}"}).json()["entries"]
    docs = [json.loads(e["entry"]) for e in entries]
    seen = {(d["action"], d["target"]) for d in docs}
    for want in [("categorise", f"recording:{one}"), ("case_add", f"recording:{two}"), ("note", f"recording:{two}"),
                 ("retention_extend", f"recording:{two}"), ("case_close", "case:01YE1234525"),
                 ("delete", f"recording:{three}"), ("category_add", "category:Evidence - crime"),
                 ("export", "case:01YE1234525"), ("share", "case:01YE1234525"), ("share_revoke", "case:01YE1234525"),
                 ("share_refused", "case:01YE1234525"), ("view", f"recording:{one}")]:
        assert want in seen, want
    assert b.cli("audit-verify").stdout.startswith("audit trail: OK")
