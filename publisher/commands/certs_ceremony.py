"""`lcm certs sign` and `lcm certs combine`: the root ceremony (publisher/ceremony.py)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from cert_sector.keys import key_id_hex
from publisher import ceremony, certs
from publisher import sector_format as fmt
from publisher.console import command_edge, err, out, print_json, warn
from publisher.errors import PublisherError
from publisher.fsutil import write_output
from publisher.signing import open_signer

AsJson = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


@command_edge
def sign(
    file: Annotated[Path, typer.Argument(help="The sector being signed (from build --unsigned).")],
    key: Annotated[
        str, typer.Option("--key", help="This holder's root key: .pem, pkcs11:URI or exec:CMD.")
    ],
    previous: Annotated[
        Path | None,
        typer.Option("--previous", help="The sector it replaces (to check an old root's role)."),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Where to write (default: in place).")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Sign without asking.")] = False,
    passphrase_env: Annotated[
        str | None,
        typer.Option("--passphrase-env", envvar="LCM_PASSPHRASE_ENV", help="Env var: passphrase."),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Show the sector's body, then add this root holder's signature to it."""
    sector = ceremony.read_unfinished(file)
    old = certs.load_sector(previous) if previous is not None else None
    if old is not None and old.repo != sector.repo:
        raise PublisherError(f"--previous is a sector for {old.repo}, not {sector.repo}")
    info = certs.describe(sector)
    # The holder sees what they sign (and its SHA-256, to compare out of band) first.
    console = err if as_json else out
    for line in certs.summary_lines(info):
        console.print(line, highlight=False)
    if not yes and sys.stdin.isatty() and not typer.confirm("Sign this sector?"):
        raise PublisherError("not signed")
    signer = open_signer(key, passphrase_env)
    kid = key_id_hex(signer.public_key)
    roles = []
    if signer.public_key in sector.roots:
        roles.append("a root of this sector")
    if old is not None and signer.public_key in old.roots:
        roles.append(f"a root of the previous sector (sequence {old.seq})")
    if not roles:
        if old is not None:
            raise PublisherError(
                f"key {kid} is a root of neither this sector nor --previous: its signature "
                "would count for nothing"
            )
        warn(
            f"key {kid} is not a root of this sector: it counts only as a "
            "root of the sector this one replaces (check with --previous)"
        )
    data = ceremony.add_signature(sector, signer)
    target = output or file
    write_output(target, data, [Path(key)] if output is not None and ":" not in key else [])
    signed = fmt.parse_sector(data, min_signatures=0)
    trusted = ceremony.RootSet("previous", old.roots, old.threshold) if old else None
    summary = ceremony.report(signed, trusted)
    if as_json:
        print_json({"output": str(target), "signed_by": kid, "roles": roles, **summary})
        return
    out.print(f"signed {target} with {kid} ({', '.join(roles) or 'an old root'})")
    for line in ceremony.report_lines(summary):
        out.print(line, highlight=False)


@command_edge
def combine(
    files: Annotated[list[Path], typer.Argument(help="Copies of one sector, each signed.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the result.")],
    previous: Annotated[
        Path | None,
        typer.Option("--previous", help="The sector it replaces (to check old roots' signatures)."),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Merge the signatures of copies of one sector body (signed in parallel) into one file."""
    copies = [(f, ceremony.read_unfinished(f)) for f in files]
    old = certs.load_sector(previous) if previous is not None else None
    if old is not None and copies and old.repo != copies[0][1].repo:
        raise PublisherError(f"--previous is a sector for {old.repo}, not {copies[0][1].repo}")
    data, warnings = ceremony.combine(copies, old.roots if old is not None else [])
    for text in warnings:
        warn(text)
    write_output(output, data)
    merged = fmt.parse_sector(data, min_signatures=0)
    kids = [kid.hex() for kid, _ in merged.signatures]
    if as_json:
        print_json({"output": str(output), "signatures": kids})
        return
    out.print(f"wrote {output}: {len(kids)} signature(s): {', '.join(kids)}")
    out.print("check it with: lcm certs verify FILE --previous OLD (or --root PINNED.pub)")
