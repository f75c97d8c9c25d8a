"""The fleet's deployment files (deploy/): the units verify silently and are hardened as docs/deploy.md
says, HAProxy accepts the config it will run, the fleet config is a valid backend config, and SeaweedFS
laid out as deploy/ lays it out offers nothing but S3 on the network address, with Object Lock holding
and the filer's HTTP API closed even on loopback."""

from __future__ import annotations

import datetime as dt
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
import requests
from botocore.exceptions import ClientError
from fleetkit import DEPLOY_HAPROXY, HAPROXY, render_haproxy, self_signed
from seaweedkit import NETWORK_IP, OPERATOR, SeaweedS3, s3_client
from systemdkit import analyze, exposure

REPO = Path(__file__).resolve().parents[1]
UNITS = sorted((REPO / "deploy/systemd").glob("*.service"))



def stated_exposure() -> float:
    """The figure docs/deploy.md promises for the backend unit (its own words, so they cannot drift)."""
    m = re.search(r"`systemd-analyze security`\s+exposure (\d+\.\d+)", (REPO / "docs/deploy.md").read_text())
    assert m, "docs/deploy.md no longer states the backend unit's systemd-analyze security exposure"
    return float(m.group(1))


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This host's stock units, ours, and a stub for every executable ours name (verify checks they exist)."""
    root = tmp_path_factory.mktemp("unit-root")
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    for unit in UNITS:
        shutil.copy(unit, root / "usr/lib/systemd/system" / unit.name)
        for m in re.finditer(r"^Exec\w*=[-+!@:]*(/\S+)", unit.read_text(), flags=re.MULTILINE):
            exe = root / m.group(1).lstrip("/")
            exe.parent.mkdir(parents=True, exist_ok=True)
            exe.write_text("#!/bin/sh\n")
            exe.chmod(0o755)
    return root


@pytest.mark.parametrize("unit", ["bodycam-backend@a.service", "seaweedfs.service", "seaweedfs-s3.service"])
def test_verify_is_silent(fake_root: Path, unit: str) -> None:
    proc = analyze("verify", f"--root={fake_root}", unit)
    assert proc.returncode == 0 and not (proc.stdout + proc.stderr).strip(), proc.stdout + proc.stderr


def test_verify_would_catch_a_bad_line(fake_root: Path) -> None:
    bad = fake_root / "usr/lib/systemd/system/bad-backend@.service"
    bad.write_text((REPO / "deploy/systemd/bodycam-backend@.service").read_text()
                   .replace("RestartSec=2s", "RestartSec=soon"))
    try:
        out = analyze("verify", f"--root={fake_root}", "bad-backend@a.service")
        assert "Failed to parse sec value" in out.stdout + out.stderr, out
    finally:
        bad.unlink()



def test_backend_unit_exposure_is_what_the_guide_says() -> None:
    score = exposure(REPO / "deploy/systemd/bodycam-backend@.service")
    assert score <= stated_exposure(), f"the backend unit rates {score}; docs/deploy.md says {stated_exposure()}"


@pytest.mark.parametrize("unit", ["seaweedfs.service", "seaweedfs-s3.service"])
def test_seaweedfs_units_are_hardened_too(unit: str) -> None:
    assert exposure(REPO / "deploy/systemd" / unit) <= 2.0


def _settings(unit: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    text = (REPO / "deploy/systemd" / unit).read_text().replace("\\\n", " ")
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            out.setdefault(k.strip(), []).append(" ".join(v.split()))
    return out


def test_backend_unit_contract() -> None:
    s = _settings("bodycam-backend@.service")
    assert s["ExecStart"] == [
        "/opt/bodycam-backend/venv/bin/bodycam backend serve --config /etc/bodycam-backend/%i.toml"]
    assert s["Restart"] == ["always"] and s["User"] == ["bodycam-backend"]
    assert s["ProtectSystem"] == ["strict"] and s["ReadWritePaths"] == ["/srv/bodycam-staging"]
    assert s["StateDirectory"] == ["bodycam-backend"] and s["CapabilityBoundingSet"] == [""]
    assert "/srv/bodycam-staging" in s["RequiresMountsFor"][0]


def test_seaweedfs_binds_everything_but_s3_to_loopback_and_closes_the_filer_http_api() -> None:
    server = _settings("seaweedfs.service")["ExecStart"][0]
    assert "-ip=127.0.0.1" in server and "-ip.bind=127.0.0.1" in server and "-filer.disableHttp" in server
    s3 = _settings("seaweedfs-s3.service")["ExecStart"][0]
    assert " s3 " in s3 and "-filer=127.0.0.1:" in s3 and "-config=/etc/seaweedfs/s3.json" in s3
    assert not re.search(r"-ip\.bind=(0\.0\.0\.0|127\.)", s3), "the S3 API must listen on the storage network"


# --- HAProxy ----------------------------------------------------------------------------------------

def test_haproxy_accepts_the_deployed_config(tmp_path: Path) -> None:
    assert HAPROXY, "no haproxy: apt-get install haproxy (scripts/_bootstrap.sh does this as root)"
    pem, _ = self_signed(tmp_path)
    text = DEPLOY_HAPROXY.read_text().replace("/etc/haproxy/certs/bodycam.pem", str(pem))
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(text)
    proc = subprocess.run([HAPROXY, "-c", "-f", str(cfg)], capture_output=True, text=True, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Configuration file is valid" in out and "[WARNING]" not in out, out


def test_haproxy_check_would_catch_a_bad_line(tmp_path: Path) -> None:
    pem, _ = self_signed(tmp_path)
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(DEPLOY_HAPROXY.read_text().replace("/etc/haproxy/certs/bodycam.pem", str(pem))
                   .replace("timeout server 300s", "timeout server soon"))
    proc = subprocess.run([HAPROXY, "-c", "-f", str(cfg)], capture_output=True, text=True, check=False)
    assert proc.returncode != 0


def test_the_test_config_is_the_deployed_one_with_only_addresses_and_paths_swapped(tmp_path: Path) -> None:
    deployed = DEPLOY_HAPROXY.read_text()
    test = render_haproxy(deployed, bind="127.0.0.1:9443", pem=tmp_path / "x.pem", stats_socket=tmp_path / "s",
                          servers=[("backend-a", "127.0.0.1:1")])
    keep = [ln.strip() for ln in deployed.splitlines()
            if re.match(r"\s*(timeout|balance|option|http-check|http-request|default-server|retries)\b", ln)]
    for line in keep:
        assert line in test, f"the fleet test would not run {line!r} from deploy/haproxy.cfg"
    with pytest.raises(AssertionError, match="exactly one line"):
        render_haproxy(deployed.replace("chroot", "#"), bind="x", pem=tmp_path, stats_socket=tmp_path, servers=[])


# --- the fleet config ---------------------------------------------------------------------------------

def test_fleet_config_is_a_valid_backend_config() -> None:
    from bodycam_backend import config as backend_config

    cfg = backend_config.load(REPO / "deploy/backend-fleet.toml")
    assert cfg.storage.backend == "s3" and not cfg.s3.create_bucket
    # every object is locked at least as long as uncategorised footage is kept, and no longer: the 31 days
    # of the Met's rule, so non-evidential footage can be deleted on time (a category raises the lock)
    assert cfg.s3.retention_days == 31
    assert cfg.database.url.startswith("postgresql://")
    assert cfg.storage.staging_dir and cfg.storage.keys_dir and cfg.auth.session_secret
    assert cfg.limits.body_idle_seconds < 60, "HAProxy's timeout client (60 s) must outlast the backend's 408"


# --- SeaweedFS as deployed ----------------------------------------------------------------------------

def _listening(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, port)) == 0


def test_seaweedfs_offers_only_s3_on_the_network_and_object_lock_holds(tmp_path: Path) -> None:
    sw = SeaweedS3(tmp_path / "sw", bucket="lock-check")
    sw.start()
    try:
        for name in ("master", "volume", "filer"):
            assert not _listening(NETWORK_IP, sw.ports[name]), f"{name} answers on the network address"
            assert not _listening(NETWORK_IP, sw.grpc[name]), f"{name} gRPC answers on the network address"
            assert _listening("127.0.0.1", sw.ports[name]), f"{name} is not running on loopback"
        s3 = s3_client(sw.endpoint)
        until = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
        vid = s3.put_object(Bucket="lock-check", Key="devices/X/segments/seg-1.mp4", Body=b"footage",
                            ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=until)["VersionId"]
        for who in (s3, s3_client(sw.endpoint, OPERATOR)):
            with pytest.raises(ClientError):
                who.delete_object(Bucket="lock-check", Key="devices/X/segments/seg-1.mp4", VersionId=vid)
        with pytest.raises(ClientError):
            s3.create_bucket(Bucket="not-the-backends")  # its key is scoped to its bucket
        # The filer's HTTP API (which can delete locked versions) is off even on loopback.
        url = f"http://127.0.0.1:{sw.ports['filer']}/buckets/lock-check/devices/X/segments/seg-1.mp4"
        r = requests.delete(url, timeout=5)
        assert r.status_code == 404 and "page not found" in r.text, (r.status_code, r.text)  # no filer handler
        body = s3.get_object(Bucket="lock-check", Key="devices/X/segments/seg-1.mp4", VersionId=vid)["Body"]
        assert body.read() == b"footage"
    finally:
        sw.stop()
