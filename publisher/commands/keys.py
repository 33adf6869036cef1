"""`lcm keys`: create and inspect signing keys (files, PKCS#11 tokens, signing commands)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from cert_sector.keys import key_id_hex
from publisher import signing
from publisher.console import command_edge, out, print_json, warn
from publisher.errors import PublisherError
from publisher.fsutil import write_atomic

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
    name: Annotated[
        str | None,
        typer.Argument(help="Key name: writes NAME.pem and NAME.pub (with --pkcs11: NAME.pub)."),
    ] = None,
    directory: Annotated[Path, typer.Option("--dir", help="Folder for the key files.")] = Path(),
    pkcs11: Annotated[
        str | None,
        typer.Option(
            "--pkcs11",
            help="Create the key in a PKCS#11 token instead: pkcs11:token=LABEL;object=NAME "
            "(module from LCM_PKCS11_MODULE, PIN from LCM_PKCS11_PIN or a prompt).",
        ),
    ] = None,
    passphrase_env: PassphraseEnv = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Create a P-256 key pair: a file (0600, encrypted with a passphrase) or in a token."""
    if pkcs11 is not None:
        _new_in_token(pkcs11, name, directory, as_json)
        return
    if name is None:
        raise PublisherError("give the key a NAME (or --pkcs11 URI for a key in a token)")
    passphrase = signing.read_passphrase(
        passphrase_env, f"Passphrase for {name}.pem (empty: none): "
    )
    pem, pub, signer = signing.generate(directory, name, passphrase)
    kid = key_id_hex(signer.public_key)
    if passphrase is None and passphrase_env is None and not sys.stdin.isatty():
        # No terminal to ask (a script, CI): said, so that it is not found out later.
        warn(
            f"{pem} is not encrypted (no terminal to ask for a passphrase): "
            "--passphrase-env VAR encrypts it"
        )
    if as_json:
        print_json(
            {"key_id": kid, "private": str(pem), "public": str(pub), "encrypted": bool(passphrase)}
        )
        return
    out.print(Text.assemble("key id ", (kid, "bold")))
    out.print(f"private key {pem} (mode 0600{', encrypted' if passphrase else ''})")
    out.print(f"public key  {pub}")


def _new_in_token(uri: str, name: str | None, directory: Path, as_json: bool) -> None:
    from publisher.pkcs11_signer import generate_in_token

    pub_path = None
    if name is not None:
        signing.check_key_name(name)  # before the token makes a key that NAME.pub cannot hold
        pub_path = directory / f"{name}.pub"
        if pub_path.exists():
            raise PublisherError(f"{pub_path} already exists; refusing to overwrite a key")
        # The folder too: a key made in the token whose .pub cannot be written is left
        # behind, and holds its label against a rerun.
        if directory.exists() and not directory.is_dir():
            raise PublisherError(f"--dir {directory} is not a folder")
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PublisherError(f"cannot create --dir {directory}: {exc.strerror}") from None
    public = generate_in_token(uri)
    kid = key_id_hex(public)
    if pub_path is not None:
        write_atomic(pub_path, signing.public_key_pem(public))
    if as_json:
        print_json(
            {
                "key_id": kid,
                "private": uri,
                "public": str(pub_path) if pub_path else None,
                "public_key": public.hex(),
            }
        )
        return
    out.print(Text.assemble("key id ", (kid, "bold")))
    out.print(f"private key {uri} (in the token, not extractable)", highlight=False)
    out.print(f"public key  {pub_path or public.hex()}")


@app.command("show")
@command_edge
def show(
    key: Annotated[
        str,
        typer.Argument(help="A .pem private key, a .pub public key, pkcs11:URI or exec:CMD ARGS."),
    ],
    passphrase_env: PassphraseEnv = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Print a key's id and public key."""
    public = signing.load_public_key(key, passphrase_env)
    kid = key_id_hex(public)
    if as_json:
        print_json({"key_id": kid, "public_key": public.hex()})
        return
    out.print(f"key id     {kid}")
    out.print(f"public key {public.hex()}")
