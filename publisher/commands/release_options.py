"""Options shared by the `lcm release` (and `lcm fleet`) commands, the token read from the
environment and the API session they make with it."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from cert_sector.encoding import check_repo
from cert_sector.errors import TrustError
from publisher.console import retry_notice
from publisher.errors import PublisherError
from publisher.release.github import API_URL_ENV, RetryPolicy, Session


def _repo_name(value: str) -> str:
    # Checked before any request: a typo is named at once, not after the host's retries.
    try:
        check_repo(value)
    except TrustError as exc:
        raise typer.BadParameter(str(exc)) from None
    return value


Repo = Annotated[
    str, typer.Option("--repo", callback=_repo_name, help="The repository, OWNER/NAME.")
]
ApiUrl = Annotated[
    str,
    typer.Option(
        "--api-url",
        envvar=API_URL_ENV,
        help="REST API base: GitHub, GitHub Enterprise (…/api/v3) or `lcm host`.",
    ),
]
TokenEnv = Annotated[
    str,
    typer.Option("--token-env", help="Environment variable that holds the API token."),
]
AsJson = Annotated[bool, typer.Option("--json", help="Machine-readable output (no progress).")]
KeyPassphraseEnv = Annotated[
    str | None,
    typer.Option("--passphrase-env", envvar="LCM_PASSPHRASE_ENV", help="Env var: key passphrase."),
]


def token_from_env(token_env: str, required: bool) -> str | None:
    token = os.environ.get(token_env)
    if required and not token:
        raise PublisherError(
            f"${token_env} is not set: export a token that may write the repo's releases "
            "(the token is read from the environment only, never from an argument)"
        )
    return token or None


def api_session(
    api_url: str, token_env: str, *, required: bool, retry: RetryPolicy | None = None
) -> Session:
    """The command's API session: the token from `token_env` (`required`: or stop), and each
    retry said on stderr as it comes."""
    token = token_from_env(token_env, required)
    return Session(api_url, token, token_env=token_env, retry=retry, on_retry=retry_notice)
