"""Which client address the backend believes behind a load balancer ([server] forwarded_allow_ips), against
real backend processes: X-Forwarded-For counts only from a listed proxy, so the audit trail (and sign-in
throttling per address) sees the reviewer behind HAProxy, and nobody else can claim an address."""

from __future__ import annotations

import subprocess
import sys

import pytest
import requests
from backendkit import BackendProcess
from reviewkit import PASSWORD, csrf_of, signed_in, user_add

pytestmark = pytest.mark.slow

CLAIMED = "203.0.113.7"


def failed_sign_in_address(tmp_path, **server) -> str:
    """Fail a sign-in sending X-Forwarded-For from 127.0.0.1; the address the trail recorded for it."""
    backend = BackendProcess(tmp_path, server=server)
    backend.start()
    try:
        assert user_add(backend, "aud", "auditor").returncode == 0
        s = requests.Session()
        form = s.get(backend.url + "/login").text
        r = s.post(backend.url + "/login", data={"name": "nobody", "password": "wrong", "csrf": csrf_of(form)},
                   headers={"X-Forwarded-For": CLAIMED})
        assert r.status_code == 401
        entries = signed_in(backend.url, "aud", PASSWORD).get(backend.url + "/audit?format=json").json()["entries"]
        (failed,) = [e for e in entries if e["action"] == "sign_in_failed"]
        return failed["data"]["address"]
    finally:
        backend.stop()


def test_the_forwarded_address_is_believed_only_from_a_listed_proxy(tmp_path) -> None:
    assert failed_sign_in_address(tmp_path / "trusted") == CLAIMED  # default: a proxy on this host
    assert failed_sign_in_address(tmp_path / "listed", forwarded_allow_ips="10.0.1.2, 127.0.0.0/8") == CLAIMED
    assert failed_sign_in_address(tmp_path / "other", forwarded_allow_ips="10.0.1.2") == "127.0.0.1"


def test_a_bad_proxy_list_is_one_line_naming_the_key(tmp_path) -> None:
    cfg = tmp_path / "backend.toml"
    cfg.write_text(f'[server]\nforwarded_allow_ips = "10.0.1.2, haproxy.local"\n[storage]\ndata_dir = "{tmp_path}"\n')
    r = subprocess.run([sys.executable, "-m", "bodycam.cli", "backend", "serve", "--config", str(cfg)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert "[server] forwarded_allow_ips" in line and "'haproxy.local'" in line, line
