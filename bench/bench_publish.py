"""Publishing: wall time and API requests for apps of 20 and 200 files, against an in-process host.

For each size it prints, against a real `lcm host` on loopback (PyGithub, no throttling):
- the first publish (draft, 5 assets, publish, beta pointer) with one earlier
  release in the repo, and a re-run of the same command (nothing to upload);
- the requests the host saw, split into API calls, uploads and downloads.
The number of requests does not grow with the number of files: the files
travel as one pack asset. It does grow with the number of releases already
in the repo (one manifest download each, to pick the next sequence).
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives.asymmetric import ec

from publisher import sector_format as sf
from publisher.host.server import start_host
from publisher.release.github import RetryPolicy, Session
from publisher.release.publish import PublishRequest, publish
from publisher.release.sequence import Ticker
from publisher.signing import KeySigner, Signer

TOKEN = "bench-token"
FILE_SIZE = 2048


def make_app(root: Path, count: int) -> Path:
    for i in range(count):
        path = root / f"lib/mod{i:03}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        seed = hashlib.sha256(str(i).encode()).hexdigest()
        path.write_text((f"# {seed}\n" * (FILE_SIZE // 67 + 1))[:FILE_SIZE])
    (root / "main.py").write_text("import lib.mod000\n")
    return root


def sector_for(repo: str, root: Signer, release: Signer) -> bytes:
    body = sf.pack_body(sf.Sector(repo, 1, 0, 1, [root.public_key], [release.public_key], []))
    return sf.pack_sector(body, [(root.key_id, root.sign(body))])


def summarise(requests: list) -> str:
    uploads = sum(1 for r in requests if r.path.startswith("/api/uploads/"))
    api = sum(1 for r in requests if r.path.startswith("/api/v3/"))
    other = len(requests) - uploads - api
    return f"{len(requests):3d} requests ({api} API, {uploads} uploads, {other} asset downloads)"


class SkippedWaits(Ticker):
    """A local clock whose sleeps pass at once (and are added up)."""

    def __init__(self) -> None:
        self.skipped = 0.0
        super().__init__(lambda: time.monotonic() + self.skipped, self._skip)

    def _skip(self, seconds: float) -> None:
        self.skipped += seconds


def main() -> None:
    root = KeySigner(ec.generate_private_key(ec.SECP256R1()))
    release = KeySigner(ec.generate_private_key(ec.SECP256R1()))
    with tempfile.TemporaryDirectory(prefix="lcm-bench-publish-") as tmp:
        host = start_host(Path(tmp) / "host", token=TOKEN)
        try:
            print(f"lcm release publish against lcm host at {host.url} ({os.cpu_count()} CPUs)")
            for count in (20, 200):
                repo = f"bench/app{count}"
                host.create_repo(repo)
                app = make_app(Path(tmp) / f"app{count}", count)
                sector = sector_for(repo, root, release)

                def run(tag: str, app: Path = app, repo: str = repo, sector: bytes = sector):
                    host.clear_requests()
                    session = Session(host.api_url, TOKEN, retry=RetryPolicy(base_delay=0.1))
                    started = time.perf_counter()
                    # Rule Q2 (publisher/release/sequence.py) waits up to a second for the
                    # host's clock between two releases of one second; that is not the cost
                    # of publishing, so the bench skips the wait and reports it apart.
                    ticker = SkippedWaits()
                    request = PublishRequest(app, repo, tag, release, sector)
                    result = publish(session, request, ticker=ticker)
                    return time.perf_counter() - started, result, ticker.skipped

                run("v0.9.0")  # an earlier release, as in a real repo
                seconds, result, waited = run("v1.0.0")
                size = sum(f.stat().st_size for f in app.rglob("*") if f.is_file())
                print(
                    f"{count + 1:4d} files, {size / 1024:6.0f} KiB: "
                    f"publish {seconds * 1000:7.1f} ms, {summarise(host.requests)}; "
                    f"sequence {result.sequence} (clock wait skipped: {waited * 1000:.0f} ms)"
                )
                seconds, result, _ = run("v1.0.0")
                print(
                    f"{'':21s}re-run  {seconds * 1000:7.1f} ms, "
                    f"{summarise(host.requests)}; {result.state}"
                )
        finally:
            host.shutdown()


if __name__ == "__main__":
    main()
