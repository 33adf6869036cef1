"""`lcm keys`: create and inspect signing keys."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cert_sector.keys import key_id_hex
from publisher import signing
from publisher.console import command_edge, out, print_json

app = typer.Typer(help="Create and inspect P-256 signing keys.", no_args_is_help=True)

PassphraseEnv = Annotated[
    str | None,
    typer.Option(
        "--passphrase-env",
        envvar="LCM_PASSPHRASE_ENV",
        help="Name of the environment variable holding the key's passphrase.",
    ),
]


@app.command("new")
@command_edge
def new(
    name: Annotated[str, typer.Argument(help="Key name: writes NAME.pem and NAME.pub.")],
    directory: Annotated[Path, typer.Option("--dir", help="Folder for the key files.")] = Path(),
    passphrase_env: PassphraseEnv = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Create a P-256 key pair (the private key is written 0600, encrypted with a passphrase)."""
    passphrase = signing.read_passphrase(
        passphrase_env, f"Passphrase for {name}.pem (empty: none): "
    )
    pem, pub, signer = signing.generate(directory, name, passphrase)
    kid = key_id_hex(signer.public_key)
    if as_json:
        print_json(
            {"key_id": kid, "private": str(pem), "public": str(pub), "encrypted": bool(passphrase)}
        )
        return
    out.print(f"key id [bold]{kid}[/]")
    out.print(f"private key {pem} (mode 0600{', encrypted' if passphrase else ''})")
    out.print(f"public key  {pub}")


@app.command("show")
@command_edge
def show(
    file: Annotated[Path, typer.Argument(help="A .pem private key or a .pub public key.")],
    passphrase_env: PassphraseEnv = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Print a key's id and public key."""
    public = signing.load_public_key(file, passphrase_env)
    kid = key_id_hex(public)
    if as_json:
        print_json({"key_id": kid, "public_key": public.hex()})
        return
    out.print(f"key id     {kid}")
    out.print(f"public key {public.hex()}")
