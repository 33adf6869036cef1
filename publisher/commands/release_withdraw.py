"""`lcm release yank` and `lcm release delete` (logic in `publisher/release/withdraw.py`)."""

from __future__ import annotations

from typing import Annotated

import typer

from publisher.commands.release_options import ApiUrl, AsJson, Repo, TokenEnv, api_session
from publisher.console import command_edge, out, print_json, warn
from publisher.release.github import DEFAULT_API_URL, DEFAULT_TOKEN_ENV
from publisher.release.withdraw import WithdrawResult, delete, yank

Tag = Annotated[str, typer.Argument(help="The release's tag, e.g. v1.2.0.")]


def _report(result: WithdrawResult, as_json: bool) -> None:
    if as_json:
        print_json(result.as_json())
        return
    seq = "?" if result.sequence is None else str(result.sequence)
    out.print(f"{result.action}: {result.tag} (sequence {seq})", highlight=False)
    out.print(f"latest release: {result.latest or 'none'}", highlight=False)
    if result.beta_pointer:
        out.print(f"beta pointer {result.beta_pointer}", highlight=False)
    out.print(
        "devices that installed it keep it and take the next release you publish "
        "(its sequence is higher); no other device will install it",
        highlight=False,
    )
    for warning in result.warnings:
        warn(warning)


@command_edge
def yank_command(
    tag: Tag,
    repo: Repo,
    reason: Annotated[str, typer.Option("--reason", help="Why (kept in the draft's name).")] = "",
    api_url: ApiUrl = DEFAULT_API_URL,
    token_env: TokenEnv = DEFAULT_TOKEN_ENV,
    as_json: AsJson = False,
) -> None:
    """Withdraw a release: back to a draft no device sees; devices on it take the next one."""
    session = api_session(api_url, token_env, required=True)
    _report(yank(session, repo, tag, reason), as_json)


@command_edge
def delete_command(
    tag: Tag,
    repo: Repo,
    api_url: ApiUrl = DEFAULT_API_URL,
    token_env: TokenEnv = DEFAULT_TOKEN_ENV,
    as_json: AsJson = False,
) -> None:
    """Delete a release and its assets; devices on it take the next one (its sequence is higher)."""
    session = api_session(api_url, token_env, required=True)
    _report(delete(session, repo, tag), as_json)
