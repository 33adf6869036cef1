"""`lcm certs`: build, show and verify cert sectors."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from cert_sector import sector as fmt
from publisher import certs
from publisher.console import command_edge, out, print_json
from publisher.errors import PublisherError
from publisher.fsutil import write_atomic
from publisher.signing import load_public_key

app = typer.Typer(help="Build, show and verify signed cert sectors.", no_args_is_help=True)

PassphraseEnv = Annotated[
    str | None,
    typer.Option(
        "--passphrase-env", envvar="LCM_PASSPHRASE_ENV", help="Env var with the keys' passphrase."
    ),
]


@app.command("build")
@command_edge
def build(
    repo: Annotated[str, typer.Option("--repo", help="OWNER/NAME the sector belongs to.")],
    root_key: Annotated[
        list[str],
        typer.Option(
            "--root-key",
            help="Root key: a signer (.pem, pkcs11:URI, exec:CMD) signs, a .pub is only listed.",
        ),
    ],
    release_key: Annotated[
        list[str], typer.Option("--release-key", help="Release key (.pub, .pem, pkcs11:, exec:).")
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the sector.")],
    threshold: Annotated[int, typer.Option("--threshold", min=1, help="Roots needed to sign.")] = 1,
    ca: Annotated[
        list[Path] | None, typer.Option("--ca", help="PEM file of TLS trust anchors.")
    ] = None,
    seq: Annotated[
        int | None, typer.Option("--seq", min=0, help="Sequence (default: previous + 1, or 1).")
    ] = None,
    expires: Annotated[
        str | None, typer.Option("--expires", help="Expiry date, YYYY-MM-DD.")
    ] = None,
    previous: Annotated[
        Path | None, typer.Option("--previous", help="The sector this one replaces.")
    ] = None,
    old_root_key: Annotated[
        list[str] | None,
        typer.Option("--old-root-key", help="A signer of a root of --previous."),
    ] = None,
    passphrase_env: PassphraseEnv = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Build and sign a cert sector, checked against its roots (and --previous) before writing."""
    data, sector = certs.build_sector(
        repo=repo,
        root_keys=root_key,
        release_keys=release_key,
        threshold=threshold,
        ca_files=ca or [],
        seq=seq,
        expires=expires,
        previous=previous,
        old_root_keys=old_root_key or [],
        passphrase_env=passphrase_env,
    )
    write_atomic(output, data)
    if as_json:
        print_json({"output": str(output), "bytes": len(data), **certs.describe(sector)})
    else:
        out.print(
            f"wrote {output}: {len(data)} bytes, sequence {sector.seq}, {len(sector.cas)} CA(s)"
        )


@app.command("show")
@command_edge
def show(
    file: Annotated[Path, typer.Argument(help="A certs.sector file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Describe a cert sector (without checking its signatures)."""
    info = certs.describe(fmt.parse_sector(certs.read_sector(file)))
    if as_json:
        print_json(info)
        return
    out.print(f"repo        {info['repo']}")
    out.print(f"sequence    {info['sequence']}")
    out.print(f"expires     {info['expires'] or 'never'}")
    out.print(f"roots       {info['threshold']} of {', '.join(info['roots'])}")
    out.print(f"release     {', '.join(info['release_keys'])}")
    for ca_info in info["cas"]:
        out.print(f"CA          {ca_info['subject']} (until {ca_info.get('not_after', '?')})")
    out.print(f"signed by   {', '.join(info['signatures'])}")


@app.command("verify")
@command_edge
def verify(
    file: Annotated[Path, typer.Argument(help="A certs.sector file.")],
    root: Annotated[
        list[Path] | None, typer.Option("--root", help="Pinned root public key.")
    ] = None,
    threshold: Annotated[int, typer.Option("--threshold", min=1, help="Pinned roots needed.")] = 1,
    previous: Annotated[
        Path | None, typer.Option("--previous", help="The trusted sector it replaces.")
    ] = None,
    repo: Annotated[str | None, typer.Option("--repo", help="Expected OWNER/NAME.")] = None,
) -> None:
    """Check a sector as a device would: exit 0 only when it is valid."""
    data = certs.read_sector(file)
    if (root is None) == (previous is None):
        raise PublisherError("give either --root (pinned keys) or --previous (trusted sector)")
    trusted: fmt.Sector | fmt.PinnedRoots
    if previous is not None:
        trusted = fmt.parse_sector(certs.read_sector(previous))
    else:
        expected = repo or fmt.parse_sector(data).repo
        trusted = fmt.PinnedRoots(expected, [load_public_key(p) for p in root or []], threshold)
    if repo and trusted.repo != repo:
        raise PublisherError(f"--previous is a sector for {trusted.repo}, not {repo}")
    sector = fmt.verify_sector(data, trusted, now=int(time.time()))
    out.print(f"valid: {sector.repo} sequence {sector.seq}, signed by {sector.threshold}+ roots")
