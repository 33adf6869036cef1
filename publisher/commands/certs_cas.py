"""`lcm certs cas`: fetch the TLS trust anchors (roots) of the hosts devices talk to."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from publisher.console import command_edge, out, print_json
from publisher.fsutil import write_output
from publisher.timefmt import format_date
from publisher.tlsanchors import fetch_anchor, parse_host, to_pem, unique_roots


@command_edge
def cas(
    hosts: Annotated[
        list[str],
        typer.Argument(help="Hosts devices download from: github.com, HOST:PORT or https URLs."),
    ],
    output: Annotated[
        Path, typer.Option("-o", "--output", help="PEM file for `certs build --ca`.")
    ],
    ca_file: Annotated[
        Path | None,
        typer.Option("--ca-file", help="Verify against this PEM bundle, not the machine's store."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Verify each host's certificate chain and keep the root it ends in (for --ca)."""
    anchors = [fetch_anchor(*parse_host(text), ca_file) for text in hosts]
    roots = unique_roots(anchors)
    pem = to_pem(roots)
    write_output(output, pem, [ca_file] if ca_file else [])
    rows = [
        {
            "host": f"{a.host}:{a.port}",
            "chain": [c.subject.rfc4514_string() for c in a.chain],
            "root": a.root.subject.rfc4514_string(),
            "root_not_after": format_date(a.root.not_valid_after_utc.timestamp()),
        }
        for a in anchors
    ]
    if as_json:
        print_json({"output": str(output), "roots": len(roots), "hosts": rows})
        return
    for row in rows:
        out.print(
            f"{row['host']}: root {row['root']} (until {row['root_not_after']})",
            highlight=False,
        )
    out.print(
        f"wrote {output}: {len(roots)} root(s); pass it to `lcm certs build --ca {output}`",
        highlight=False,
    )
