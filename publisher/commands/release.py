"""`lcm release`: publish, verify and list signed releases (logic in `publisher/release/`)."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich import filesize
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
)
from rich.text import Text

from cert_sector.errors import TrustError
from cert_sector.semver import parse_version
from publisher.certs import read_sector
from publisher.commands.release_options import (
    ApiUrl,
    AsJson,
    KeyPassphraseEnv,
    Repo,
    TokenEnv,
    api_session,
)
from publisher.console import command_edge, err, out, print_json, warn
from publisher.device.manager import write_manager_release
from publisher.errors import PublisherError
from publisher.fleet.broker import publish_hint_after, split_broker_url
from publisher.printable import printable
from publisher.release.github import (
    DEFAULT_API_URL,
    DEFAULT_TOKEN_ENV,
    ProgressCallback,
    RetryPolicy,
    web_url_for,
)
from publisher.release.listing import list_releases, text_rows
from publisher.release.publish import DRAFT, PUBLISHED, PUBLISHING, Publisher, PublishRequest
from publisher.release.source import check_exists
from publisher.release.verify import Trust, verify_release
from publisher.signing import load_trusted_keys, open_signer

app = typer.Typer(help="Publish, verify and list signed releases.", no_args_is_help=True)


class AverageSpeedColumn(ProgressColumn):
    """Bytes per second from the upload's start to now (or to its end), shown for every
    asset: rich's own speed column needs several samples, which a small asset never gives."""

    def render(self, task: Task) -> Text:
        elapsed = task.finished_time if task.finished else task.elapsed
        if not elapsed or not task.completed:
            return Text("-", style="progress.data.speed")
        speed = filesize.decimal(int(task.completed / elapsed))
        return Text(f"{speed}/s", style="progress.data.speed")


def _left_after(tag: str, reached: str | None) -> str:
    """What an interrupted publish left on the host (Publisher.reached), and what to do."""
    again = "run the same command again to finish"
    if reached == DRAFT:
        return (
            f"{tag} is not published: a draft may hold what was uploaded so far (devices "
            f"never see a draft); {again}"
        )
    if reached == PUBLISHING:
        return f"stopped while making {tag} live: it is a draft or published; {again}"
    if reached == PUBLISHED:
        return f"{tag} is published; its beta pointer or push hint may not be; {again}"
    return f"nothing was written to the host for {tag}"


@contextmanager
def _upload_progress(enabled: bool) -> Iterator[ProgressCallback | None]:
    if not enabled:
        yield None
        return
    columns = (
        TextColumn("{task.description:<14}"),
        # Plain colour names: rich's default bar colours are RGB, which a 16-colour
        # terminal shows as the grey of an empty bar, so a finished bar looked unfilled.
        BarColumn(complete_style="cyan", finished_style="green", pulse_style="cyan"),
        DownloadColumn(),
        AverageSpeedColumn(),
    )
    # Started at the first upload: a command refused before it prints no empty display.
    progress = Progress(*columns, console=err, transient=False)
    tasks: dict[str, TaskID] = {}

    def update(name: str, done: int, total: int) -> None:
        if not tasks:
            progress.start()
        if name not in tasks:
            tasks[name] = progress.add_task(name, total=total)
        progress.update(tasks[name], completed=done, total=total)

    try:
        yield update
    finally:
        if tasks:
            progress.stop()


@app.command("publish")
@command_edge
def publish_command(
    source: Annotated[
        Path | None, typer.Argument(help="App folder (kind files) or firmware .bin.")
    ] = None,
    *,
    repo: Repo,
    tag: Annotated[str, typer.Option("--tag", help="Release tag: v + semver, e.g. v1.2.0.")],
    key: Annotated[
        str,
        typer.Option(
            "--key",
            help="Release signing key: a .pem file, pkcs11:URI or exec:CMD ARGS.",
        ),
    ],
    certs: Annotated[
        Path | None,
        typer.Option("--certs", help="The repo's current cert sector (default: the latest's)."),
    ] = None,
    prerelease: Annotated[
        bool, typer.Option("--prerelease", help="Publish on the beta channel.")
    ] = False,
    board: Annotated[
        list[str] | None, typer.Option("--board", help="Target board (repeatable).")
    ] = None,
    kind: Annotated[str, typer.Option("--kind", help="files (an app) or firmware (.bin).")] = (
        "files"
    ),
    compile_mpy: Annotated[
        bool, typer.Option("--compile-mpy", help="Ship .py modules as .mpy (not main.py).")
    ] = False,
    notes: Annotated[str, typer.Option("--notes", help="Release notes.")] = "",
    min_manager: Annotated[
        str, typer.Option("--min-manager", help="Oldest manager version that may install it.")
    ] = "",
    seq: Annotated[
        int | None,
        typer.Option("--seq", min=1, help="Sequence number (default: the host's clock)."),
    ] = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Replace a published tag (always with a new sequence)."),
    ] = False,
    downgrade: Annotated[
        bool,
        typer.Option(
            "--downgrade", help="Allow a version below the newest published one (devices go back)."
        ),
    ] = False,
    new_board: Annotated[
        bool,
        typer.Option("--new-board", help="Allow --board names lcm does not know (a new board)."),
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Build, sign and check everything; upload nothing."),
    ] = False,
    manager: Annotated[
        bool,
        typer.Option(
            "--manager", help="Publish the lcm manager itself (its .mpy modules), not SOURCE."
        ),
    ] = False,
    api_url: ApiUrl = DEFAULT_API_URL,
    token_env: TokenEnv = DEFAULT_TOKEN_ENV,
    passphrase_env: KeyPassphraseEnv = None,
    retries: Annotated[
        int, typer.Option("--retries", min=1, help="Attempts per step on 5xx/dropped connections.")
    ] = 8,
    retry_delay: Annotated[
        float, typer.Option("--retry-delay", min=0.0, help="First back-off in seconds (doubles).")
    ] = 1.0,
    rollout: Annotated[
        int | None,
        typer.Option(
            "--rollout",
            min=0,
            max=100,
            help="Staged roll-out: only this percent of the fleet takes it "
            "(widen later with `lcm release rollout`).",
        ),
    ] = None,
    mqtt: Annotated[
        str | None,
        typer.Option(
            "--mqtt",
            envvar="LCM_MQTT_URL",
            help="Broker: once live, publish the retained push hint (docs/fleet.md; "
            "user/password from $LCM_MQTT_USER, $LCM_MQTT_PASSWORD).",
        ),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Build, sign and publish a release: draft, upload every asset, then publish."""
    if manager == (source is not None):
        raise PublisherError("give SOURCE (an app folder or a firmware .bin) or --manager")
    if manager and (kind != "files" or compile_mpy):
        raise PublisherError("--manager publishes the manager's .mpy modules as they are built")
    # What is wrong here is said before a missing token: the local inputs first.
    if mqtt:
        split_broker_url(mqtt)  # a broker URL that cannot work, before anything is uploaded
    if min_manager:
        try:
            parse_version(min_manager)
        except TrustError as exc:
            raise PublisherError(
                f"--min-manager {min_manager!r} is not a manager version (e.g. 1.4.0): {exc}"
            ) from None
    if source is not None:
        check_exists(source)
    signer = open_signer(key, passphrase_env)
    sector = read_sector(certs) if certs is not None else None
    session = api_session(
        api_url,
        token_env,
        required=not dry_run,
        retry=RetryPolicy(attempts=retries, base_delay=retry_delay),
    )
    request = PublishRequest(
        source=source or Path(),
        repo=repo,
        tag=tag,
        signer=signer,
        sector=sector,
        sector_file=certs,
        kind=kind,
        prerelease=prerelease,
        boards=list(board or []),
        min_manager=min_manager,
        compile_mpy=compile_mpy,
        notes=notes,
        seq=seq,
        force=force,
        dry_run=dry_run,
        new_board=new_board,
        downgrade=downgrade,
        rollout=rollout,
        app=not manager,
    )
    started = time.monotonic()
    publisher = None
    try:
        with (
            tempfile.TemporaryDirectory(prefix="lcm-manager-") as workdir,
            _upload_progress(not as_json and not dry_run) as progress,
        ):
            if manager:
                request.source = write_manager_release(Path(workdir))
            publisher = Publisher(session, request, progress)
            result = publisher.run()
        hint = None
        if mqtt and not dry_run:
            # Only now: the release is live, so a device the hint wakes finds it.
            hint = result.tag if rollout is None else f"{result.tag} rollout {rollout}"
            publish_hint_after(mqtt, repo, hint, f"{repo} {result.tag} is {result.state}")
    except KeyboardInterrupt:
        # Ctrl-C: say what is left on the host; a re-run finishes (docs/maintainer.md §6).
        reached = None if publisher is None or dry_run else publisher.reached
        err.print(
            Text.assemble(("interrupted:", "bold red"), " " + _left_after(tag, reached)),
            highlight=False,
        )
        raise
    if as_json:
        print_json(
            {**result.as_json(), "hint": hint, "seconds": round(time.monotonic() - started, 3)}
        )
        return
    out.print(
        f"{result.state}: {repo} {result.tag} (sequence {result.sequence}, {result.channel})",
        highlight=False,
    )
    if hint:
        out.print(f"push hint {hint!r} published to {mqtt}", highlight=False)
    for name, outcome in result.assets.items():
        out.print(f"  {name:<14} {outcome}", highlight=False)
    if result.beta_pointer:
        out.print(f"beta pointer {result.beta_pointer}", highlight=False)
    for warning in result.warnings:
        warn(warning)
    out.print(result.url, highlight=False)


@app.command("verify")
@command_edge
def verify_command(
    repo: Repo,
    tag: Annotated[str | None, typer.Option("--tag", help="Verify this tag.")] = None,
    channel: Annotated[
        str | None, typer.Option("--channel", help="stable or beta: what a device would pick.")
    ] = None,
    root: Annotated[
        list[Path] | None, typer.Option("--root", help="Pinned root public key (repeatable).")
    ] = None,
    threshold: Annotated[int, typer.Option("--threshold", min=1, help="Roots needed.")] = 1,
    certs: Annotated[
        Path | None, typer.Option("--certs", help="A trusted cert sector instead of --root.")
    ] = None,
    web_url: Annotated[
        str | None,
        typer.Option("--web-url", help="Browser base URL (default: derived from --api-url)."),
    ] = None,
    api_url: ApiUrl = DEFAULT_API_URL,
    installed_seq: Annotated[
        int, typer.Option("--installed-seq", help="Refuse sequences not above this one.")
    ] = -1,
    ca_file: Annotated[
        Path | None,
        typer.Option(
            "--ca-file",
            help="PEM trust anchors for HTTPS (default: the CAs of --certs, else the system's).",
        ),
    ] = None,
    board: Annotated[
        str | None,
        typer.Option("--board", help="Check too what a device of this board checks."),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Download a release through browser URLs only and check it as a device would."""
    if (root is None) == (certs is None):
        raise PublisherError("give either --root (pinned root keys) or --certs (a trusted sector)")
    if tag is not None and channel is not None:
        raise PublisherError("give --tag or --channel, not both")
    if root is not None and threshold > len(root):
        raise PublisherError(f"--threshold {threshold} is more than the {len(root)} --root given")
    trust = Trust(
        roots=load_trusted_keys(root or []),
        threshold=threshold,
        sector=read_sector(certs) if certs is not None else None,
    )
    result = verify_release(
        web_url or web_url_for(api_url),
        repo,
        trust,
        tag=tag,
        channel=channel or "stable",
        installed_seq=installed_seq,
        now=int(time.time()),
        ca_file=str(ca_file) if ca_file is not None else None,
        board=board,
    )
    if as_json:
        print_json({"valid": True, **result.as_json()})
        return
    out.print(
        f"valid: {repo} {result.tag} sequence {result.sequence} ({result.channel}, {result.kind}), "
        f"{result.files} file(s), {result.pack_size} bytes, cert sector {result.sector_sequence}"
    )
    if result.beta_pointer:
        out.print(f"beta pointer -> {result.beta_pointer}")
    if result.rollout:
        out.print(f"roll-out {result.rollout} (roll-out sequence {result.rollout_seq})")
    for warning in result.warnings:
        warn(warning)


@app.command("list")
@command_edge
def list_command(
    repo: Repo,
    api_url: ApiUrl = DEFAULT_API_URL,
    token_env: TokenEnv = DEFAULT_TOKEN_ENV,
    as_json: AsJson = False,
) -> None:
    """List releases, newest first: tag, sequence, channel, kind, boards, state, date, notes."""
    session = api_session(api_url, token_env, required=False)
    rows = list_releases(session, repo)
    if as_json:
        print_json(rows)
        return
    for line in text_rows(rows, out.width):  # tags and notes as the host has them: as text
        out.print(printable(line), highlight=False)
