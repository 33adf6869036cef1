"""`lcm certs`: build, show and verify cert sectors."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from cert_sector.errors import ExpiredError, TrustError
from publisher import ceremony, certs
from publisher import sector_format as fmt
from publisher.console import command_edge, out, print_json, warn
from publisher.errors import PublisherError
from publisher.fsutil import write_output
from publisher.release.preflight import expiry_warnings
from publisher.signing import load_trusted_keys
from publisher.timefmt import format_date
from publisher.tlsanchors import missing_anchor_warning

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
        list[Path] | None,
        typer.Option("--ca", help="PEM file of TLS trust anchors (`lcm certs cas` makes one)."),
    ] = None,
    web_url: Annotated[
        str | None,
        typer.Option("--web-url", help="Where devices download from (warns: https without --ca)."),
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
    scope: Annotated[
        list[str] | None,
        typer.Option(
            "--scope",
            help="Limit a release key: KEY:CHANNELS[:BOARDS], e.g. ci.pub:beta or KEYID::esp32.",
        ),
    ] = None,
    epoch: Annotated[
        int | None,
        typer.Option(
            "--epoch",
            min=1,
            max=0xFFFFFFFF,
            help="Start a new epoch (after a stolen release key fast-forwarded): with --first-seq.",
        ),
    ] = None,
    first_seq: Annotated[
        int | None,
        typer.Option(
            "--first-seq",
            min=0,
            max=0xFFFFFFFF,
            help="First release sequence of the new epoch: above every genuine release's.",
        ),
    ] = None,
    unsigned: Annotated[
        bool,
        typer.Option(
            "--unsigned",
            help="Write the body only, for root holders to sign with `lcm certs sign`.",
        ),
    ] = False,
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
        unsigned=unsigned,
        scopes=scope or [],
        epoch=epoch,
        first_seq=first_seq,
    )
    keys = [Path(k) for k in [*root_key, *release_key, *(old_root_key or [])] if ":" not in k]
    write_output(output, data, [*keys, *(ca or [])])
    warnings = expiry_warnings(sector, int(time.time()), f"{output}")
    warnings += certs.unknown_scope_boards(sector)
    no_anchor = None if sector.cas else missing_anchor_warning(web_url)
    if no_anchor:
        warnings.append(no_anchor)
    if as_json:
        info = certs.describe(sector)
        print_json({"output": str(output), "bytes": len(data), "warnings": warnings, **info})
    else:
        out.print(
            f"wrote {output}: {len(data)} bytes, sequence {sector.seq}, {len(sector.cas)} CA(s)",
            highlight=False,
        )
    for warning in warnings:
        warn(warning)


@app.command("show")
@command_edge
def show(
    file: Annotated[Path, typer.Argument(help="A certs.sector file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Describe a cert sector (without checking its signatures; it may be still unsigned)."""
    info = certs.describe(certs.load_sector(file, min_signatures=0))
    if as_json:
        print_json(info)
        return
    for line in certs.summary_lines(info):
        out.print(line, highlight=False)


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
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Check a sector as a device would: which roots signed, whether the thresholds of
    its own roots and of the trusted ones are met; exit 0 only when it is valid."""
    data = certs.read_sector(file)
    if (root is None) == (previous is None):
        raise PublisherError("give either --root (pinned keys) or --previous (trusted sector)")
    unfinished = certs.parse_sector_file(data, file, min_signatures=0)
    trusted: fmt.Sector | fmt.PinnedRoots
    if previous is not None:
        trusted = certs.load_sector(previous)
    else:
        expected = repo or unfinished.repo
        trusted = fmt.PinnedRoots(expected, load_trusted_keys(root or []), threshold)
    if repo and trusted.repo != repo:
        raise PublisherError(f"--previous is a sector for {trusted.repo}, not {repo}")
    roots = ceremony.RootSet(
        "previous" if previous is not None else "pinned", trusted.roots, trusted.threshold
    )
    info = ceremony.report(unfinished, roots)
    now = int(time.time())
    try:
        sector = fmt.verify_sector(data, trusted, now=now)
    except TrustError as exc:
        error = str(exc)
        if isinstance(exc, ExpiredError):  # dates, not the device's Unix seconds
            expired = format_date(unfinished.expires)
            error = f"{file}: sector expired on {expired} (now {format_date(now)})"
        if as_json:
            print_json({"valid": False, "error": error, **info})
        else:
            for line in ceremony.report_lines(info):
                out.print(line, highlight=False)
        if isinstance(exc, ExpiredError):
            raise PublisherError(error) from None
        raise
    if as_json:
        print_json({"valid": True, "repo": sector.repo, "sequence": sector.seq, **info})
        return
    for line in ceremony.report_lines(info):
        out.print(line, highlight=False)
    out.print(f"valid: {sector.repo} sequence {sector.seq}")
