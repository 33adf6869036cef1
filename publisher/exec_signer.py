"""Keys behind an external command: the hook for cloud KMSs and signing services.

  --key 'exec:CMD ARGS'

The command (split like a shell would, not run by one) gets the 32-byte
SHA-256 digest on stdin and answers the signature on stdout: 64 bytes r‖s
or a DER ECDSA-Sig-Value. Exit status 0 means signed; anything else is an
error naming the command and the last line it wrote on stderr.

The command needs no second operation for its public key: lcm has it sign
two fixed probe digests and recovers the one P-256 key that made both
signatures (ECDSA public-key recovery, SEC 1 §4.1.6). The probes are hashes
of texts that start with neither `LCMS` nor `LCMM`, so a probe signature can
never pass for a signed cert sector or manifest. A command that answers
garbage, or signs with different keys, has no such key and is refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shlex
import signal
import subprocess
import threading
import time
from typing import Any

from cert_sector.p256 import _B, _GX, _GY, _N, _P
from publisher.signing import (
    EXEC_PREFIX,
    Signer,
    SigningKeyError,
    signature_from_output,
    verify_with_cryptography,
)

# A signature is at most 72 bytes of DER; anything much longer is not one.
MAX_EXEC_OUTPUT = 1024
# A signing service may wait for a person's approval (a touch, a second login).
EXEC_TIMEOUT = 300
# After the command exits, how long a child it left may hold its output open.
EXIT_GRACE = 2.0
PROBES = (b"lcm exec signer: public key probe 1", b"lcm exec signer: public key probe 2")

Point = tuple[int, int] | None  # affine, None is the point at infinity


def _add(a: Point, b: Point) -> Point:
    if a is None:
        return b
    if b is None:
        return a
    if a[0] == b[0]:
        if (a[1] + b[1]) % _P == 0:
            return None
        slope = 3 * (a[0] * a[0] - 1) * pow(2 * a[1], -1, _P) % _P
    else:
        slope = (b[1] - a[1]) * pow(b[0] - a[0], -1, _P) % _P
    x = (slope * slope - a[0] - b[0]) % _P
    return x, (slope * (a[0] - x) - a[1]) % _P


def _multiply(k: int, point: Point) -> Point:
    result: Point = None
    while k:
        if k & 1:
            result = _add(result, point)
        point = _add(point, point)
        k >>= 1
    return result


def recover_public_keys(digest: bytes, signature: bytes) -> list[bytes]:
    """The public keys (65-byte points) for which `signature` (r‖s) signs `digest`."""
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    if not (0 < r < _N and 0 < s < _N):
        return []
    e = int.from_bytes(digest, "big")
    r_inv = pow(r, -1, _N)
    keys = []
    for x in (r, r + _N):
        if x >= _P:
            continue
        alpha = (x * x * x - 3 * x + _B) % _P
        y = pow(alpha, (_P + 1) // 4, _P)  # p ≡ 3 (mod 4)
        if y * y % _P != alpha:
            continue
        for ry in (y, _P - y):
            q = _add(_multiply(s * r_inv % _N, (x, ry)), _multiply(-e * r_inv % _N, (_GX, _GY)))
            if q is not None:
                keys.append(b"\x04" + q[0].to_bytes(32, "big") + q[1].to_bytes(32, "big"))
    return keys


class ExecSigner(Signer):
    def __init__(self, spec: str) -> None:
        self.describe = spec
        try:
            self.argv = shlex.split(spec[len(EXEC_PREFIX) :])
        except ValueError as exc:
            raise SigningKeyError(f"{spec}: cannot split the command line: {exc}") from None
        if not self.argv:
            raise SigningKeyError(f"{spec}: no command after exec:")
        self.public_key = self._discover_public_key()

    def sign_digest(self, digest: bytes) -> bytes:
        try:
            done = _run_capped(self.argv, digest)
        except FileNotFoundError:
            raise SigningKeyError(f"{self.describe}: command {self.argv[0]!r} not found") from None
        except PermissionError:
            raise SigningKeyError(
                f"{self.describe}: command {self.argv[0]!r} is not executable"
            ) from None
        except subprocess.TimeoutExpired:
            raise SigningKeyError(
                f"{self.describe}: no signature within {EXEC_TIMEOUT} s"
            ) from None
        if len(done.stdout) > MAX_EXEC_OUTPUT:
            raise SigningKeyError(
                f"{self.describe}: answered more than {MAX_EXEC_OUTPUT} bytes, not a signature"
            )
        if done.returncode != 0:
            lines = done.stderr.decode(errors="replace").strip().splitlines()
            why = f": {lines[-1][:200]}" if lines else ""
            raise SigningKeyError(
                f"{self.describe}: the command failed (exit status {done.returncode}){why}"
            )
        return done.stdout

    def _discover_public_key(self) -> bytes:
        first, second = (
            signature_from_output(self.sign_digest(hashlib.sha256(p).digest()), self.describe)
            for p in PROBES
        )
        keys = [
            key
            for key in recover_public_keys(hashlib.sha256(PROBES[0]).digest(), first)
            if verify_with_cryptography(key, PROBES[1], second)
        ]
        if len(keys) != 1:
            raise SigningKeyError(
                f"{self.describe}: its answers are not signatures by one P-256 key "
                "(garbage, the wrong curve, or a digest other than the one on stdin)"
            )
        return keys[0]


def _run_capped(argv: list[str], data: bytes) -> subprocess.CompletedProcess[bytes]:
    """Run `argv` with `data` on stdin, as subprocess.run does, within EXEC_TIMEOUT in all,
    keeping at most MAX_EXEC_OUTPUT + 1 bytes of stdout (and the last MAX_EXEC_OUTPUT of
    stderr). The command runs in a process group of its own, killed whole when it answers
    without end, runs too long, exits leaving a child that holds its output open (an agent
    it started) for EXIT_GRACE, or lcm is interrupted: none of them can hold lcm, nor
    outlive it."""
    deadline = time.monotonic() + EXEC_TIMEOUT
    kept = {"out": b"", "err": b""}
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )

    def kill() -> None:
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)

    def drain(stream: Any, key: str) -> None:
        while chunk := stream.read(4096):
            if key == "err":  # its last lines say why it failed
                kept[key] = (kept[key] + chunk)[-MAX_EXEC_OUTPUT:]
                continue
            kept[key] += chunk[: MAX_EXEC_OUTPUT + 1 - len(kept[key])]
            if len(kept[key]) > MAX_EXEC_OUTPUT:
                kill()
                return

    readers = [
        threading.Thread(target=drain, args=(proc.stdout, "out"), daemon=True),
        threading.Thread(target=drain, args=(proc.stderr, "err"), daemon=True),
    ]
    for reader in readers:
        reader.start()
    try:
        assert proc.stdin is not None
        with contextlib.suppress(OSError):  # a command that does not read its stdin
            proc.stdin.write(data)
            proc.stdin.close()
        proc.wait(max(0.0, deadline - time.monotonic()))
        # It exited: its output ends now, unless a child it left holds the pipes open.
        grace_end = min(deadline, time.monotonic() + EXIT_GRACE)
        for reader in readers:
            reader.join(max(0.0, grace_end - time.monotonic()))
    except BaseException:
        # Too long, or Ctrl-C (which the command, in its own session, does not get):
        # it ends with lcm's wait, never left running behind it.
        kill()
        raise
    finally:
        if any(reader.is_alive() for reader in readers):
            kill()  # a child left holding the pipes ends with the command's group
            for reader in readers:
                reader.join(2)
    return subprocess.CompletedProcess(argv, proc.returncode, kept["out"], kept["err"])
