"""`lcm release export`: write a repo's releases as a static tree (logic in
`publisher/release/export.py`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from publisher.commands.release_options import api_session
from publisher.console import command_edge, err, out, print_json
from publisher.printable import printable
from publisher.release.export import export_releases
from publisher.release.github import API_URL_ENV, DEFAULT_API_URL, DEFAULT_TOKEN_ENV, web_url_for


@command_edge
def export(
    repo: Annotated[str, typer.Option("--repo", help="The repository, OWNER/NAME.")],
    to: Annotated[Path, typer.Option("--to", help="Folder of the static tree (the web root).")],
    api_url: Annotated[
        str,
        typer.Option(
            "--api-url",
            envvar=API_URL_ENV,
            help="REST API base: GitHub, GitHub Enterprise (…/api/v3) or `lcm host`.",
        ),
    ] = DEFAULT_API_URL,
    web_url: Annotated[
        str | None,
        typer.Option(
            "--web-url",
            help="Browser base URL the assets are fetched from, as devices fetch them "
            "(default: derived from --api-url).",
        ),
    ] = None,
    token_env: Annotated[
        str,
        typer.Option("--token-env", help="Environment variable with an API token (optional)."),
    ] = DEFAULT_TOKEN_ENV,
    ca_file: Annotated[
        Path | None,
        typer.Option("--ca-file", help="PEM trust anchors for an HTTPS host (default: system's)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Write the published releases of --repo under --to, laid out as devices fetch them."""
    session = api_session(api_url, token_env, required=False)

    def show(name: str) -> None:
        if not as_json:
            err.print(f"downloading {printable(name)}", highlight=False)

    result = export_releases(
        session,
        repo,
        to,
        web_url or web_url_for(api_url),
        ca_file=str(ca_file) if ca_file else None,
        progress=show,
    )
    if as_json:
        print_json(result.as_json())
        return
    latest = result.latest or "none (no full release: no pointer written)"
    out.print(
        f"exported {repo} to {to}: {len(result.releases)} release(s), "
        f"{len(result.downloaded)} asset(s) downloaded, {result.kept} already in place; "
        f"latest {latest}",
        highlight=False,
    )
