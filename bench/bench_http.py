"""The device HTTP client in the MicroPython unix port, against an in-process `lcm host`.

Printed:
- the idle check: one `follow=False` GET of /OWNER/REPO/releases/latest, its
  requests, connections and bytes received (headers included), over HTTP and
  HTTPS (trustme EC certificate);
- the heap cost of importing lcm_device.http (.mpy) on this 64-bit port;
- the heap a kept-alive connection holds and `Client.close()` gives back (what
  the engine frees before the cert sector's signature check), over HTTP and
  HTTPS;
- the smallest heap (1 KB steps) at which one 200 KB asset downloads through
  a 2 KB buffer (redirect to a signed URL as long as github.com's, SHA-256
  checked), over HTTP and over HTTPS: as data heap with the code "in ROM"
  (lcm_sim/rommodel.py, the bars' reading: docs/device.md, "Memory")
  and as the whole `-X heapsize`; and the wall time of that download at a
  roomy heap.

Run: python bench/bench_http.py
"""

from __future__ import annotations

import hashlib
import random
import ssl
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import trustme
from github import Auth, Github

from publisher.host.server import start_host
from publisher.micropython import (
    ROM_MODEL_HEAP,
    UNIX_PACKAGES,
    build_mpy,
    rom_prelude,
    run_micropython,
)

REPO = "acme/widget"
TAG = "v1.0.0"
ASSET = random.Random(1).randbytes(200 * 1024)

IDLE = """
buf = bytearray(2048)
from lcm_device.http import Client
ca = {ca}
c = Client(buf, timeout_ms=5000, ca_ders=[ca] if ca else None)
r = c.get("{web}/{repo}/releases/latest", follow=False)
r.close()
print(r.status, c.requests, c.connections, c.bytes_in)
"""

DOWNLOAD = """
buf = bytearray(2048)
import hashlib
from lcm_device.http import Client


def main():
    ca = {ca}
    io = memoryview(buf)
    c = Client(io, timeout_ms=5000, ca_ders=[ca] if ca else None)
    r = c.get("{web}/{repo}/releases/download/{tag}/pack.lcm", max_bytes={size})
    h = hashlib.sha256()
    n = 0
    while True:
        k = r.readinto(io)
        if not k:
            break
        h.update(io[:k])
        n += k
    print(n, h.digest() == {sha!r})


main()
"""

# The body is read to its end, so the connection stays open (kept alive) until close().
CLOSE_GIVES = """
import gc
from lcm_device.http import Client
buf = bytearray(2048)
ca = {ca}
c = Client(buf, timeout_ms=5000, ca_ders=[ca] if ca else None)
r = c.get("{web}/{repo}/releases/latest", follow=False)
r.readinto(buf)
r = None
gc.collect()
a = gc.mem_alloc()
c.close()
gc.collect()
print(a - gc.mem_alloc())
"""

IMPORT_COST = """
import gc
import lcm_device.compat
gc.collect()
a = gc.mem_free()
import lcm_device.http
gc.collect()
print(a - gc.mem_free())
"""


def publish(host, folder: Path, verify: str | bool = True) -> None:
    gh = Github(
        base_url=host.api_url,
        auth=Auth.Token("bench"),
        verify=verify,
        seconds_between_requests=None,
        seconds_between_writes=None,
    )
    repo = gh.get_repo(REPO)
    rel = repo.create_git_release(TAG, "bench", "bench", draft=True)
    path = folder / "pack.lcm"
    path.write_bytes(ASSET)
    rel.upload_asset(str(path))
    rel.update_release(name="bench", message="bench", draft=False)


def run(build: Path, folder: Path, code: str, heap: str | None = None):
    script = folder / "bench_snippet.py"
    script.write_text(code)
    return run_micropython([str(script)], path=[build], heap=heap, timeout=120)


def smallest_heap(
    build: Path, folder: Path, code: str, start_kb: int, stop_kb: int, rom: bool = False
) -> int | None:
    """The smallest heap (KB) in [stop_kb, start_kb] at which `code` prints `... True`:
    the data heap with `rom`, else the whole `-X heapsize`."""
    best = None
    for kb in range(start_kb, stop_kb - 1, -1):
        if rom:
            proc = run(build, folder, rom_prelude(kb * 1024) + code, ROM_MODEL_HEAP)
        else:
            proc = run(build, folder, code, f"{kb}k")
        if proc.returncode != 0 or not proc.stdout.strip().endswith("True"):
            break
        best = kb
    return best


def bench(label: str, host, web: str, ca: bytes | None, build: Path, folder: Path) -> None:
    ca_src = repr(ca) if ca else "None"
    proc = run(build, folder, IDLE.format(ca=ca_src, web=web, repo=REPO))
    status, requests, connections, received = proc.stdout.split()
    print(
        f"{label}: idle check: status {status}, {requests} request, {connections} connection, "
        f"{received} bytes received"
    )
    proc = run(build, folder, CLOSE_GIVES.format(ca=ca_src, web=web, repo=REPO))
    print(f"{label}: close() of the kept-alive connection gives back {proc.stdout.strip()} bytes")
    code = DOWNLOAD.format(
        ca=ca_src,
        web=web,
        repo=REPO,
        tag=TAG,
        size=len(ASSET),
        sha=hashlib.sha256(ASSET).digest(),
    )
    started = time.perf_counter()
    proc = run(build, folder, code, "256k")
    elapsed = time.perf_counter() - started
    assert proc.stdout.split() == [str(len(ASSET)), "True"], proc.stdout + proc.stderr
    print(f"{label}: 200 KB download through a 2 KB buffer: {elapsed:.2f} s (process included)")
    data = smallest_heap(build, folder, code, 48, 4, rom=True)
    whole = smallest_heap(build, folder, code, 72, 12)
    print(
        f"{label}: smallest heap for the 200 KB download: {data} KB of data with the code "
        f"in ROM; {whole} KB with the code in the heap"
    )


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        build = build_mpy(folder / "mpy", UNIX_PACKAGES)
        cost = run(build, folder, IMPORT_COST).stdout.strip()
        print(f"import lcm_device.http (.mpy, 64-bit unix port): {cost} bytes of heap")

        host = start_host(folder / "plain", token="bench", repos=[REPO])
        try:
            publish(host, folder)
            bench("http", host, host.url, None, build, folder)
        finally:
            host.shutdown()

        ca = trustme.CA(key_type=trustme.KeyType.ECDSA)
        cert = ca.issue_cert("localhost", "127.0.0.1")
        cert.private_key_and_cert_chain_pem.write_to_path(str(folder / "both.pem"))
        ca.cert_pem.write_to_path(str(folder / "ca.pem"))
        der = ssl.PEM_cert_to_DER_cert(ca.cert_pem.bytes().decode())
        host = start_host(
            folder / "tls",
            token="bench",
            repos=[REPO],
            tls=(folder / "both.pem", folder / "both.pem"),
        )
        try:
            publish(host, folder, verify=str(folder / "ca.pem"))
            web = host.url.replace("127.0.0.1", "localhost")
            bench("https (EC P-256, verified)", host, web, der, build, folder)
        finally:
            host.shutdown()


if __name__ == "__main__":
    main()
