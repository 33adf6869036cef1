"""Messages the .mpy build moved into lcm_device/catalog.txt, as the device makes them.

The same bad input is given to the device code from .mpy in the real MicroPython
unix port and to its source in CPython: the messages must be the same, word for
word. Without a readable catalog a message still says which one it was.
"""

from __future__ import annotations

import shutil

import pytest

from cert_sector.encoding import Reader
from cert_sector.errors import FormatError
from cert_sector.semver import parse_version
from publisher.mpytext import CATALOG

BAD_VERSIONS = ("1.2", "1.2.3-", "1.2.3-be ta")
SCRIPT = f"""
from cert_sector.encoding import Reader
from cert_sector.semver import parse_version
for bad in {BAD_VERSIONS!r}:
    try:
        parse_version(bad)
    except Exception as exc:
        print("MSG", exc)
try:
    Reader(b"ab", None, 2).take(5, "file sha256")
except Exception as exc:
    print("MSG", exc)
"""


def _cpython_messages() -> list[str]:
    out = []
    for bad in BAD_VERSIONS:
        with pytest.raises(FormatError) as exc:
            parse_version(bad)
        out.append(str(exc.value))
    with pytest.raises(FormatError) as exc:
        Reader(b"ab", None, 2).take(5, "file sha256")
    out.append(str(exc.value))
    return out


def _messages(stdout: str) -> list[str]:
    return [line[4:] for line in stdout.splitlines() if line.startswith("MSG ")]


def test_a_moved_message_reads_as_the_source_wrote_it(mpy) -> None:
    expected = _cpython_messages()
    assert expected[0] == "version must be MAJOR.MINOR.PATCH[-PRE], got '1.2'"
    assert expected[3] == "truncated: file sha256 needs 5 bytes"
    # They were moved: the .mpy files do not hold their text, the catalog does.
    catalog = (mpy.build / CATALOG).read_text().splitlines()
    assert "truncated: %s needs %s bytes" in catalog
    assert b"truncated: %s needs" not in (mpy.build / "cert_sector/encoding.mpy").read_bytes()
    assert _messages(mpy.run(SCRIPT).stdout) == expected


def test_without_its_catalog_a_message_says_which_it_was(mpy, tmp_path) -> None:
    build = tmp_path / "build"
    shutil.copytree(mpy.build, build, symlinks=True)
    (build / CATALOG).unlink()
    script = "import sys\nsys.path.insert(0, %r)\n" % str(build) + SCRIPT
    proc = mpy.run(script.replace('print("MSG", exc)', 'print("MSG", type(exc).__name__, exc)'))
    # The message's byte offset in the catalog (publisher/mpytext.py).
    lines = b"\n" + (mpy.build / CATALOG).read_bytes()
    number = lines.index(b"\ntruncated: %s needs %s bytes\n")
    # The values it was given, and the same error type: the code went on as it would have.
    assert _messages(proc.stdout)[3] == (
        "FormatError [message %d, catalog.txt unreadable] 'file sha256' 5 " % number
    )
