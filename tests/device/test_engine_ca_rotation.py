"""CA rotation without a cable: a new cert sector brings the next TLS trust anchor before
the host changes its certificate (LCM's field outages were CA and host changes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import trustme

from publisher.device.simulate import der_from_pem
from tests.device.enginekit import Repo, app_files, new_device, run, text
from tests.hostserver import github_client, running_host
from tests.keyfactory import make_sector

# mbedTLS keeps its context and the parsed CAs in the MicroPython heap: an update
# over HTTPS needs more data heap than the 24 KB of plain HTTP (bench_update.py
# prints the smallest that works).
TLS_DATA_KB = 40


def tls_files(tmp_path: Path, name: str) -> tuple[tuple[Path, Path], Path, bytes]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_pem, key_pem, ca_pem = (tmp_path / f"{name}-{x}.pem" for x in ("cert", "key", "ca"))
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_pem))
    cert.private_key_pem.write_to_path(str(key_pem))
    ca.cert_pem.write_to_path(str(ca_pem))
    return (cert_pem, key_pem), ca_pem, der_from_pem(ca_pem.read_bytes())


def move_device(state: Path, url: str) -> None:
    cfg_path = state / "lcm/state/config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["web_url"] = url
    cfg_path.write_text(json.dumps(cfg))


def test_ca_rotation_through_the_cert_sector(tmp_path: Path, mpy: Any) -> None:
    tls_a, pem_a, der_a = tls_files(tmp_path, "a")
    tls_b, pem_b, der_b = tls_files(tmp_path, "b")
    data = tmp_path / "host-data"
    with running_host(tmp_path, tls=tls_a, data_dir=data) as host:
        repo = Repo(host, verify=str(pem_a), cas=[der_a])
        repo.publish("1.0.0", app_files("1.0.0", n=3))
        rotated = new_device(tmp_path / "r", mpy, host, repo)
        stale = new_device(tmp_path / "s", mpy, host, repo)
        for state in (rotated, stale):
            (state / "lcm/state/certs").mkdir(parents=True)
            (state / "lcm/state/certs/bootstrap.der").write_bytes(der_a)
            assert run(state, mpy, data_at_least_kb=TLS_DATA_KB).state["app_tag"] == "v1.0.0"
            # From now on only the installed sector's CAs are trusted.
            (state / "lcm/state/certs/bootstrap.der").unlink()
        repo.sector = make_sector(
            repo.name, [repo.root], [repo.release_key], seq=2, cas=[der_a, der_b]
        )
        repo.publish("2.0.0", app_files("2.0.0", n=3))
        out = text(run(rotated, mpy, data_at_least_kb=TLS_DATA_KB))
        assert "cert sector: installed sequence 2 (1 of 1 roots, 1 release keys, 2 CAs)" in out

    # The host now presents a certificate from the new CA.
    with running_host(tmp_path, tls=tls_b, data_dir=data) as host:
        repo.host = host
        repo.gh = github_client(host, verify=str(pem_b)).get_repo(repo.name)
        repo.publish("3.0.0", app_files("3.0.0", n=3))
        for state in (rotated, stale):
            move_device(state, host.url)

        status = run(rotated, mpy, data_at_least_kb=TLS_DATA_KB)
        assert status.state["app_tag"] == "v3.0.0", text(status)

        status = run(stale, mpy, data_at_least_kb=TLS_DATA_KB)
        out = text(status)
        assert "app: check failed: NetworkError: TLS with 127.0.0.1" in out, out
        assert "not correctly signed by the trusted CA" in out
        assert status.state["app_tag"] == "v1.0.0" and "APP v1.0.0 running" in out
