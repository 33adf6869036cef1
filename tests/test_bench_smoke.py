"""The benchmarks still run: each imports, and its cheapest MicroPython scripts work.

`nox -s bench` measures; no test times anything. But a bench that no longer
runs (a script string broken by an edit elsewhere) would stay unnoticed until
someone asks for the figures, so the quick parts run here, without timing.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import pytest

from publisher.micropython import UNIX_PACKAGES, build_mpy
from tests.hostserver import running_host

BENCH = Path(__file__).resolve().parent.parent / "bench"
NAMES = sorted(p.stem for p in BENCH.glob("bench_*.py"))


@pytest.fixture(scope="module")
def benches() -> dict[str, Any]:
    sys.path.insert(0, str(BENCH))
    try:
        return {name: importlib.import_module(name) for name in NAMES}
    finally:
        sys.path.remove(str(BENCH))


def test_every_bench_imports_and_has_a_main(benches: dict[str, Any]) -> None:
    assert {"bench_fleet", "bench_http", "bench_publish", "bench_update", "bench_verify"} <= set(
        benches
    )
    assert all(callable(getattr(module, "main", None)) for module in benches.values())


def test_the_quick_micropython_parts_of_the_benches_run(
    benches: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    update, http = benches["bench_update"], benches["bench_http"]
    build = build_mpy(tmp_path / "mpy", UNIX_PACKAGES)
    update.bench_cuts(tmp_path, build)
    assert "0 read twice" in capsys.readouterr().out
    assert update.import_objects(tmp_path, build) > 0
    # GitHub's layout (downloads redirect to a CDN host): the install completes; the bench
    # prints its handshakes (each asset's redirect leaves the first host: more than one).
    requests, connections = update.cdn_install(tmp_path, build, update.tls_files(tmp_path))
    assert requests >= 7 and connections > 1, (requests, connections)
    with running_host(tmp_path / "host", token="bench", repos=(http.REPO,)) as host:
        http.publish(host, tmp_path)
        code = http.IDLE.format(ca="None", web=host.url, repo=http.REPO)
        proc = http.run(build, tmp_path, code)
    assert proc.stdout.split()[:3] == ["302", "1", "1"], proc.stdout + proc.stderr


def test_the_heap_trace_finds_its_points_and_reads_its_probes(
    benches: dict[str, Any], tmp_path: Path
) -> None:
    """bench_heap_trace's points are still lines of the code (else it stops naming one), and
    a probe's output is read back: point, live heap, names, their pools."""
    trace = benches["bench_heap_trace"]
    build = trace.probed_build(tmp_path)
    probes = sum(
        (build.parent / "probed" / module).read_text().count("print('heap-trace', ")
        for module in {module for module, _, _ in trace.POINTS}
    )
    assert probes == len(trace.POINTS)
    assert (build / "lcm_device" / "metadata.mpy").is_file()
    lines = [
        "a4cf12b3c4d5 7 2026-12-07T14:10:59Z manifest: acme/widget 1.0.1 sequence 2",
        "heap-trace 3 83232",
        "qstr pool: n_pool=6, n_qstr=623, n_str_data_bytes=7000, n_total_bytes=21100",
        "heap-trace 4 90000",  # its count never came (the process ended): not a reading
    ]
    assert trace.trace(lines) == [(3, 83232, 623, 21100)]
