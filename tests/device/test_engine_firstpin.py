"""A device without pinned app roots pins them from the first sector (setup page's choice).

The setup portal writes `app_root_fingerprint` or `app_trust_first_use` when
the board has a repo but no `app_roots`; the engine's first app check then
derives the roots from the first sector (lcm_device.firstpin), pins them in
config.json and installs as with roots pinned at build time.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cert_sector.keys import key_id_hex
from publisher.device.simulate import provision
from tests.device.enginekit import Repo, app_files, run, text
from tests.hostserver import running_host
from tests.keyfactory import make_sector, new_signer


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Any]:
    with running_host(tmp_path) as h:
        yield h


def unpinned_device(tmp_path: Path, mpy: Any, host: Any, repo: Repo, **choice: Any) -> Path:
    """A device with the repo but no app roots, and the setup page's `choice`."""
    state = tmp_path / "device"
    settings = {"http_timeout_ms": 2000, "gestures": False, **choice}
    provision(state, web_url=host.url, repo=repo.name, roots=[], build=mpy.build, settings=settings)
    return state


def config(state: Path) -> dict[str, Any]:
    return json.loads((state / "lcm" / "state" / "config.json").read_text())


def fingerprint(public_key: bytes, digits: int = 16) -> str:
    return hashlib.sha256(public_key).hexdigest()[:digits]


def test_matching_fingerprint_installs_v1_and_pins_the_root(
    tmp_path: Path, mpy: Any, host: Any
) -> None:
    repo = Repo(host)
    repo.publish("1.0.0", app_files("1.0.0", n=3))
    fp = fingerprint(repo.root.public_key, 24)
    state = unpinned_device(tmp_path, mpy, host, repo, app_root_fingerprint=fp)

    status = run(state, mpy)

    out = text(status)
    kid = key_id_hex(repo.root.public_key)
    assert f"app: pinned root keys {kid} from the first sector (fingerprint)" in out
    assert status.state["app_tag"] == "v1.0.0" and "APP v1.0.0 running" in out, out
    cfg = config(state)
    assert cfg["app_roots"] == [repo.root.public_key.hex()]
    assert "app_root_fingerprint" not in cfg and "app_trust_first_use" not in cfg


def test_wrong_fingerprint_refuses_and_pins_nothing(tmp_path: Path, mpy: Any, host: Any) -> None:
    repo = Repo(host)
    repo.publish("1.0.0", app_files("1.0.0", n=3))
    other = fingerprint(new_signer().public_key)
    state = unpinned_device(tmp_path, mpy, host, repo, app_root_fingerprint=other)

    status = run(state, mpy)

    out = text(status)
    assert (
        "app: refused v1.0.0: Refused: cert sector: SignatureError: "
        f"no root key of the first sector matches the fingerprint {other}"
    ) in out
    assert "pinned root keys" not in out
    assert status.state.get("app_tag") is None and "app: none installed yet" in out
    cfg = config(state)
    assert "app_roots" not in cfg and cfg["app_root_fingerprint"] == other
    assert not (state / "lcm" / "state" / "certs" / "app.sector").exists()


def test_unsigned_first_sector_refused_even_on_trust_on_first_use(
    tmp_path: Path, mpy: Any, host: Any
) -> None:
    repo = Repo(host)
    repo.sector = make_sector(repo.name, [repo.root], [repo.release_key], signers=[new_signer()])
    repo.publish("1.0.0", app_files("1.0.0", n=3))
    state = unpinned_device(tmp_path, mpy, host, repo, app_trust_first_use=True)

    status = run(state, mpy)

    out = text(status)
    assert "cert sector: SignatureError: sector signed by 0 of the trusted roots" in out
    assert status.state.get("app_tag") is None
    assert "app_roots" not in config(state)


def test_no_roots_and_no_choice_is_refused_by_name(tmp_path: Path, mpy: Any, host: Any) -> None:
    repo = Repo(host)
    repo.publish("1.0.0", app_files("1.0.0", n=3))
    state = unpinned_device(tmp_path, mpy, host, repo, app_trust_first_use=True)
    cfg = config(state)
    del cfg["app_trust_first_use"]
    (state / "lcm" / "state" / "config.json").write_text(json.dumps(cfg))

    status = run(state, mpy)

    assert (
        "app: refused v1.0.0: Refused: cert sector: TrustError: "
        "no pinned app root keys, no fingerprint, no trust on first use"
    ) in text(status)
    assert status.state.get("app_tag") is None


def test_trust_on_first_use_pins_then_a_takeover_is_refused(
    tmp_path: Path, mpy: Any, host: Any
) -> None:
    repo = Repo(host)
    repo.publish("1.0.0", app_files("1.0.0", n=3))
    state = unpinned_device(tmp_path, mpy, host, repo, app_trust_first_use=True)

    status = run(state, mpy)

    out = text(status)
    kid = key_id_hex(repo.root.public_key)
    assert f"app: pinned root keys {kid} from the first sector (trust on first use)" in out
    assert status.state["app_tag"] == "v1.0.0", out
    assert config(state)["app_roots"] == [repo.root.public_key.hex()]

    # Someone else takes the repo over: a sector by other roots, newer sequence.
    mallory = new_signer()
    repo.sector = make_sector(repo.name, [mallory], [mallory], seq=5)
    repo.publish("2.0.0", app_files("2.0.0", n=3), key=mallory)

    status = run(state, mpy)

    out = text(status)
    assert "app: refused v2.0.0: " in out
    assert "sector signed by 0 of the trusted roots" in out
    assert "pinned root keys" not in out
    assert status.state["app_tag"] == "v1.0.0" and "APP v1.0.0 running" in out
    assert config(state)["app_roots"] == [repo.root.public_key.hex()]
