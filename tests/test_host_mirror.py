"""The pull-through mirror against upstreams that change or lie: a moved beta pointer, an
extra asset, the wrong pins, an upstream that rolls back, a staged roll-out widened,
replayed, forged or withdrawn. Upstreams are lcm hosts over HTTP;
releases are made by `lcm release publish`'s code."""

from __future__ import annotations

import io
from pathlib import Path

from cert_sector.assets import CHAIN_ASSET, ROLLOUT_ASSET
from cert_sector.rollout import Rollout, parse_rollout
from publisher.demo import make_repo
from publisher.host.mirror import MirrorConfig, MirrorSpec
from publisher.release.chain import build_chain, split_chain
from publisher.release.github import Session
from publisher.release.publish import PublishRequest, publish
from publisher.release.rollout import sign_rollout, widen
from publisher.release.verify import Trust, verify_release
from publisher.signing import load_signer
from tests.hostserver import TEST_REPO, TEST_TOKEN, github_client, running_host
from tests.keyfactory import make_sector, new_signer
from tests.staticserver import running_nginx


class Upstream:
    """Keys for TEST_REPO and a way to publish with them on a host."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.keys = make_repo(TEST_REPO, tmp_path / "keys")

    def release(
        self, host, tag: str, *, prerelease: bool = False, seq: int | None = None,
        rollout: int | None = None,
    ) -> None:  # fmt: skip
        source = self.tmp_path / f"src-{tag}"
        source.mkdir(exist_ok=True)
        (source / "main.py").write_text(f"print({tag!r})\n")
        request = PublishRequest(
            source, TEST_REPO, tag, load_signer(self.keys.release_pem), sector=self.keys.sector,
            prerelease=prerelease, seq=seq, rollout=rollout,
        )  # fmt: skip
        publish(Session(host.api_url, TEST_TOKEN), request)


def mirror_of(upstream_host, tmp_path: Path, trust: Trust):
    config = MirrorConfig(upstream_host.url, [MirrorSpec(TEST_REPO, trust)], interval=3600)
    return running_host(tmp_path / "mirror", token=None, repos=(), mirror=config)


def served(mirror_host) -> list[tuple[str, bool, list[str]]]:
    store = mirror_host.store
    rels = store.releases_of(store.repo(TEST_REPO), drafts=True)
    return [(r.tag_name, r.prerelease, sorted(a.name for a in store.assets_of(r))) for r in rels]


def beta_pointer(mirror_host, tag: str) -> bytes:
    store = mirror_host.store
    rel = store.release_by_tag(store.repo(TEST_REPO), tag)
    return store.asset_path(store.asset_named(rel, "beta.tag")).read_bytes()


def test_a_moved_beta_pointer_brings_its_release_and_extra_assets_stay_behind(tmp_path):
    up = Upstream(tmp_path)
    with running_host(tmp_path / "a") as upstream:
        up.release(upstream, "v1.0.0")
        rel = github_client(upstream).get_repo(TEST_REPO).get_release("v1.0.0")
        rel.upload_asset_from_memory(io.BytesIO(b"not signed"), 10, "notes.txt")
        with mirror_of(upstream, tmp_path, Trust(roots=[up.keys.root.public_key])) as mirror:
            assert mirror.mirror is not None
            mirror.mirror.refresh()
            assets = [
                "SHA256SUMS",
                "beta.tag",
                "certs.chain",
                "certs.sector",
                "manifest.lcm",
                "pack.lcm",
            ]
            assert served(mirror) == [("v1.0.0", False, assets)]  # no notes.txt
            mirror.mirror.refresh()
            assert mirror.mirror.status[TEST_REPO].mirrored == ["v1.0.0"]  # nothing new

            up.release(upstream, "v1.1.0-beta.1", prerelease=True)  # moves v1.0.0's beta.tag
            mirror.mirror.refresh()
            assert mirror.mirror.status[TEST_REPO].error is None
            assert [t for t, _, _ in served(mirror)] == ["v1.1.0-beta.1", "v1.0.0"]
            assert served(mirror)[0][1] is True  # still a prerelease: never latest
            assert beta_pointer(mirror, "v1.0.0") == b"v1.1.0-beta.1\n"
            assert mirror.store.latest(mirror.store.repo(TEST_REPO)).tag_name == "v1.0.0"


def test_a_release_signed_under_other_roots_is_not_mirrored(tmp_path):
    up = Upstream(tmp_path)
    with running_host(tmp_path / "a") as upstream:
        up.release(upstream, "v1.0.0")
        with mirror_of(upstream, tmp_path, Trust(roots=[new_signer().public_key])) as mirror:
            assert mirror.mirror is not None
            mirror.mirror.refresh()
            error = mirror.mirror.status[TEST_REPO].error
            assert error is not None and error.startswith("certs.sector:"), error
            assert served(mirror) == []


def test_an_upstream_that_rolls_back_is_refused(tmp_path):
    """The upstream is replaced (DNS, a compromised host) by one whose latest release is an
    older signed one: the mirror keeps serving the newer release it has."""
    up = Upstream(tmp_path)
    with running_host(tmp_path / "a") as upstream, running_host(tmp_path / "c") as attacker:
        up.release(attacker, "v1.0.0")  # sequence 1, genuinely signed
        up.release(upstream, "v1.0.0")
        up.release(upstream, "v2.0.0")  # sequence 2
        with mirror_of(upstream, tmp_path, Trust(roots=[up.keys.root.public_key])) as mirror:
            assert mirror.mirror is not None
            mirror.mirror.refresh()
            assert [t for t, _, _ in served(mirror)] == ["v2.0.0"]
            mirror.mirror.upstream = attacker.url
            mirror.mirror.refresh()
            error = mirror.mirror.status[TEST_REPO].error
            assert error is not None and "not above" in error, error
            assert [t for t, _, _ in served(mirror)] == ["v2.0.0"]


ROOTS = [new_signer() for _ in range(4)]
KEY = new_signer()


def rotations() -> list[bytes]:
    """Sector 1 (root 0), then three root rotations, each signed by the old and new root."""
    out = [make_sector(TEST_REPO, [ROOTS[0]], [KEY])]
    for n in (1, 2, 3):
        signers = [ROOTS[n - 1], ROOTS[n]]
        out.append(make_sector(TEST_REPO, [ROOTS[n]], [KEY], seq=n + 1, signers=signers))
    return out


def release_with(host, tmp_path: Path, tag: str, sector: bytes) -> None:
    source = tmp_path / f"src-{tag}"
    source.mkdir(exist_ok=True)
    (source / "main.py").write_text(f"print({tag!r})\n")
    publish(
        Session(host.api_url, TEST_TOKEN),
        PublishRequest(source, TEST_REPO, tag, KEY, sector=sector),
    )


def replace_chain(host, tag: str, chain: bytes | None) -> None:
    """The upstream lies: its release's certs.chain is swapped (None: deleted)."""
    rel = github_client(host).get_repo(TEST_REPO).get_release(tag)
    next(a for a in rel.get_assets() if a.name == CHAIN_ASSET).delete_asset()
    if chain is not None:
        rel.upload_asset_from_memory(io.BytesIO(chain), len(chain), CHAIN_ASSET)


def test_a_mirror_behind_root_rotations_walks_the_chain_and_refuses_a_lying_one(tmp_path):
    """The mirror mirrored v1.0.0 (sector 1), then the repo rotated its root three times:
    the mirror verifies v2.0.0's sector through certs.chain, as a device would, and
    serves the chain; a chain with a forged or missing link, or with a rewritten
    history, is refused, and the mirror keeps serving what it had."""
    sectors = rotations()
    stranger = new_signer()
    forged = make_sector(TEST_REPO, [stranger], [stranger], seq=2)
    with running_host(tmp_path / "a") as upstream:
        release_with(upstream, tmp_path, "v1.0.0", sectors[0])
        with mirror_of(upstream, tmp_path, Trust(roots=[ROOTS[0].public_key])) as mirror:
            assert mirror.mirror is not None
            status = mirror.mirror.status[TEST_REPO]
            mirror.mirror.refresh()
            assert status.mirrored == ["v1.0.0"] and status.error is None
            for tag, sector in zip(("v1.1.0", "v1.2.0", "v2.0.0"), sectors[1:], strict=True):
                release_with(upstream, tmp_path, tag, sector)

            lies = {
                "forged link": (
                    [sectors[0], forged, *sectors[2:]],
                    "certs.chain: link sequence 2: sector signed by 0 of the trusted roots",
                ),
                "missing link": (
                    [sectors[0], *sectors[2:]],
                    "certs.chain: link sequence 3: sector signed by 0 of the trusted roots",
                ),
                "another end": (sectors[:3], "not the release's certs.sector"),
            }
            for members, reason in lies.values():
                replace_chain(upstream, "v2.0.0", build_chain(members[:-1], members[-1]))
                mirror.mirror.refresh()
                assert status.error is not None and reason in status.error, status.error
                assert status.error.startswith("certs.sector: sector signed by 0")
                assert [t for t, _, _ in served(mirror)] == ["v1.0.0"]

            replace_chain(upstream, "v2.0.0", build_chain(sectors[:3], sectors[3]))
            mirror.mirror.refresh()
            assert status.error is None and status.mirrored == ["v1.0.0", "v2.0.0"]
            store = mirror.store
            rel = store.release_by_tag(store.repo(TEST_REPO), "v2.0.0")
            chain = store.asset_path(store.asset_named(rel, CHAIN_ASSET)).read_bytes()
            assert split_chain(chain) == sectors  # served as verified, for the devices

            # A later release's chain that rewrites the history served before: refused,
            # though the mirror's trust (sector 4) is above the rewritten member.
            release_with(upstream, tmp_path, "v2.1.0", sectors[3])
            replace_chain(upstream, "v2.1.0", build_chain([forged, *sectors[2:3]], sectors[3]))
            mirror.mirror.refresh()
            assert status.error is not None
            assert "sequence 2 is not the one served before" in status.error, status.error
            assert [t for t, _, _ in served(mirror)] == ["v2.0.0", "v1.0.0"]

            # A release without a chain mirrors as before: its sector alone.
            replace_chain(upstream, "v2.1.0", None)
            mirror.mirror.refresh()
            assert status.error is None and status.mirrored[-1] == "v2.1.0"
            assert CHAIN_ASSET not in served(mirror)[0][2]


def replace_rollout(host, tag: str, doc: bytes | None) -> None:
    """The upstream's roll-out document of `tag` is swapped (None: deleted)."""
    rel = github_client(host).get_repo(TEST_REPO).get_release(tag)
    for asset in rel.get_assets():
        if asset.name == ROLLOUT_ASSET:
            asset.delete_asset()
    if doc is not None:
        rel.upload_asset_from_memory(io.BytesIO(doc), len(doc), ROLLOUT_ASSET)


def mirrored_rollout(mirror_host, tag: str) -> Rollout:
    store = mirror_host.store
    rel = store.release_by_tag(store.repo(TEST_REPO), tag)
    return parse_rollout(store.asset_path(store.asset_named(rel, ROLLOUT_ASSET)).read_bytes())


def test_a_staged_rollout_is_mirrored_widened_and_never_narrowed(tmp_path):
    """Devices behind a mirror get the release's roll-out document, not the whole release
    at once: it is mirrored with the release, replaced when the maintainer widens or halts
    it, and an older (narrower) or forged one from the upstream is refused (rules R3, R5),
    as is a withdrawn one (the mirror keeps serving the last it verified)."""
    up = Upstream(tmp_path)
    with running_host(tmp_path / "a") as upstream:
        session = Session(upstream.api_url, TEST_TOKEN)
        signer = load_signer(up.keys.release_pem)
        up.release(upstream, "v1.0.0", rollout=10)
        roots = Trust(roots=[up.keys.root.public_key])
        result = verify_release(upstream.url, TEST_REPO, roots)
        assert (result.rollout, result.rollout_seq) == ("10 %", 1)  # `lcm release verify`
        rel = github_client(upstream).get_repo(TEST_REPO).get_release("v1.0.0")
        first = next(a for a in rel.get_assets() if a.name == ROLLOUT_ASSET)
        old_doc = session.download(first, 256)
        with mirror_of(upstream, tmp_path, roots) as mirror:
            assert mirror.mirror is not None
            status = mirror.mirror.status[TEST_REPO]
            mirror.mirror.refresh()
            assert status.error is None and ROLLOUT_ASSET in served(mirror)[0][2]
            assert mirrored_rollout(mirror, "v1.0.0").share == 10
            mirror.mirror.refresh()
            assert status.mirrored == ["v1.0.0"]  # nothing moved: nothing stored again

            widen(session, TEST_REPO, "v1.0.0", signer, 50, False)
            mirror.mirror.refresh()
            assert status.error is None, status.error
            doc = mirrored_rollout(mirror, "v1.0.0")
            assert (doc.share, doc.seq) == (50, 2)
            assert verify_release(mirror.url, TEST_REPO, roots).rollout == "50 %"

            replace_rollout(upstream, "v1.0.0", old_doc)  # a replay of the 10 % document
            mirror.mirror.refresh()
            assert status.error is not None and "below the 2 mirrored" in status.error
            assert mirrored_rollout(mirror, "v1.0.0").share == 50

            stranger = new_signer()
            forged = sign_rollout(stranger, Rollout(TEST_REPO, "v1.0.0", 1, 9, 0, True))
            replace_rollout(upstream, "v1.0.0", forged)
            mirror.mirror.refresh()
            assert status.error is not None and status.error.startswith("rollout.lcm:")
            assert "unknown key" in status.error, status.error
            assert mirrored_rollout(mirror, "v1.0.0").share == 50

            replace_rollout(upstream, "v1.0.0", None)  # withdrawn: fail-closed
            mirror.mirror.refresh()
            assert status.error is None
            assert mirrored_rollout(mirror, "v1.0.0").share == 50

            replace_rollout(upstream, "v1.0.0", sign_rollout(signer, doc))  # back, as it was
            widen(session, TEST_REPO, "v1.0.0", signer, None, True)
            mirror.mirror.refresh()
            assert status.error is None, status.error
            doc = mirrored_rollout(mirror, "v1.0.0")
            assert (doc.halted, doc.seq) == (True, 3)


def test_a_static_export_is_an_upstream_too(tmp_path):
    """A site mirror fed from a static export (`lcm release export` behind a web server or
    CDN: no redirects, a pointer file) verifies and stores its releases as from a host,
    the staged roll-out's document included."""
    from typer.testing import CliRunner

    from publisher.cli import app

    up = Upstream(tmp_path)
    www = tmp_path / "www"
    with running_host(tmp_path / "a") as upstream:
        up.release(upstream, "v1.0.0", rollout=20)
        result = CliRunner().invoke(
            app,
            ["release", "export", "--repo", TEST_REPO, "--to", str(www),
             "--api-url", upstream.api_url],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
    roots = Trust(roots=[up.keys.root.public_key])
    with running_nginx(www, tmp_path / "nginx") as web, mirror_of(web, tmp_path, roots) as mirror:
        assert mirror.mirror is not None
        mirror.mirror.refresh()
        status = mirror.mirror.status[TEST_REPO]
        assert status.error is None and status.mirrored == ["v1.0.0"], status.error
        assert ROLLOUT_ASSET in served(mirror)[0][2]
        assert mirrored_rollout(mirror, "v1.0.0").share == 20
