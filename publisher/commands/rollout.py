"""`lcm release rollout TAG SHARE|--halt`: widen or halt a staged roll-out (docs/fleet.md)."""

from __future__ import annotations

from typing import Annotated

import typer

from publisher.commands.release_options import (
    ApiUrl,
    AsJson,
    KeyPassphraseEnv,
    Repo,
    TokenEnv,
    api_session,
)
from publisher.console import command_edge, out, print_json
from publisher.errors import PublisherError
from publisher.fleet.broker import publish_hint_after, split_broker_url
from publisher.release.github import DEFAULT_API_URL, DEFAULT_TOKEN_ENV
from publisher.release.rollout import widen
from publisher.signing import open_signer


@command_edge
def rollout(
    tag: Annotated[str, typer.Argument(help="The published release, e.g. v1.2.0.")],
    share: Annotated[
        int | None, typer.Argument(min=0, max=100, help="New share in percent (only grows).")
    ] = None,
    *,
    # Required options: a missing one is named by itself ("Missing option '--key'").
    repo: Repo,
    key: Annotated[
        str, typer.Option("--key", help="Release key: PEM file, pkcs11:URI or exec:CMD.")
    ],
    halt: Annotated[
        bool, typer.Option("--halt", help="Stop the roll-out: devices not on it never take it.")
    ] = False,
    mqtt: Annotated[
        str | None,
        typer.Option("--mqtt", envvar="LCM_MQTT_URL", help="Broker: publish the push hint."),
    ] = None,
    api_url: ApiUrl = DEFAULT_API_URL,
    token_env: TokenEnv = DEFAULT_TOKEN_ENV,
    passphrase_env: KeyPassphraseEnv = None,
    as_json: AsJson = False,
) -> None:
    """Widen a staged roll-out (`TAG 50`, `TAG 100`) or halt it (`TAG --halt`); signed."""
    if halt and share is not None:
        raise PublisherError("give a new share (e.g. 50 or 100) or --halt, not both")
    if not halt and share is None:
        raise PublisherError("give a new share (e.g. 50 or 100), or --halt")
    if mqtt:
        split_broker_url(mqtt)  # a broker URL that cannot work, before the roll-out changes
    signer = open_signer(key, passphrase_env)
    session = api_session(api_url, token_env, required=True)
    result = widen(session, repo, tag, signer, share, halt)
    if mqtt:
        now = "halted" if result.halted else f"at {result.share} %"
        publish_hint_after(mqtt, repo, result.hint(), f"the roll-out of {tag} is {now}")
    if as_json:
        print_json({**result.as_json(), "hint": result.hint() if mqtt else None})
        return
    now = "halted" if result.halted else f"{result.share} %"
    out.print(
        f"{repo} {tag}: roll-out {result.previous} -> {now} (roll-out sequence {result.sequence})"
    )
    if mqtt:
        out.print(f"push hint {result.hint()!r} published to {mqtt}", highlight=False)
    else:
        # The broker still holds the last hint: `lcm fleet status` shows the roll-out from it.
        out.print(
            "no push hint (no --mqtt or $LCM_MQTT_URL): devices see it at their next check, "
            "and `lcm fleet status` shows the last hint's roll-out until one is sent"
        )
