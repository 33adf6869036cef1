"""The .mpy build's message catalog (publisher/mpytext.py): the code means the same.

Every device module, built as the board gets it, is checked here: with each
`_text(N, K)` put back as the catalog's line at byte N, its syntax tree is the source's.
How the moved messages read on the device is tests/device/test_catalog_micropython.py.
"""

from __future__ import annotations

import ast

import pytest

from publisher.micropython import DEVICE_PACKAGES, REPO_ROOT, source_files
from publisher.mpytext import (
    MAX_MESSAGE,
    TEXT_MODULE,
    Catalog,
    messages_of,
    move_messages,
    values_taken,
)

_IMPORT = "from lcm_device.compat import text as _text"


class _PutBack(ast.NodeTransformer):
    """`_text(N, K)` back to the catalog's line at byte N; the import of `_text` out."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def visit_Call(self, node: ast.Call) -> ast.AST:
        if isinstance(node.func, ast.Name) and node.func.id in ("_text", "text"):
            offset, values = node.args
            assert isinstance(offset, ast.Constant) and isinstance(values, ast.Constant)
            # What lcm_device.compat.text reads: from the offset to the line break.
            line = self.data[offset.value : offset.value + MAX_MESSAGE + 1]
            message = line[: line.index(b"\n")].decode()
            assert values_taken(message) == values.value
            return ast.Constant(message)
        return self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> ast.AST | None:
        is_text = node.module == "lcm_device.compat" and node.names[0].asname == "_text"
        return None if is_text else node


def _put_back(moved: str, catalog: Catalog) -> str:
    tree = _PutBack(catalog.data()).visit(ast.parse(moved))
    return ast.dump(tree)


@pytest.mark.parametrize("rel", source_files(DEVICE_PACKAGES), ids=str)
def test_every_device_module_means_the_same_with_its_messages_moved(rel) -> None:
    source = (REPO_ROOT / rel).read_text()
    catalog = Catalog()
    home = rel.as_posix() == TEXT_MODULE  # calls its own `text`, imports nothing
    moved = move_messages(source, catalog, home)
    assert _put_back(moved, catalog) == ast.dump(ast.parse(source))
    # No message left behind that the rules would move, and the lines kept.
    assert not messages_of(ast.parse(moved))
    if catalog.offsets:
        assert len(moved.splitlines()) == len(source.splitlines()) + (0 if home else 1)
        assert (_IMPORT in moved) != home


def test_the_device_reads_as_much_as_the_longest_message() -> None:
    # lcm_device.compat.text reads _MESSAGE_READ bytes: a message and its line break.
    tree = ast.parse((REPO_ROOT / TEXT_MODULE).read_text())
    (read,) = [
        stmt.value.args[0].value
        for stmt in tree.body
        if isinstance(stmt, ast.Assign)
        and ast.unparse(stmt.targets[0]) == "_MESSAGE_READ"
        and isinstance(stmt.value, ast.Call)
        and isinstance(stmt.value.args[0], ast.Constant)
    ]
    assert read == MAX_MESSAGE + 1


def test_the_update_path_s_messages_leave_the_code() -> None:
    catalog = Catalog()
    for rel in source_files(DEVICE_PACKAGES):
        move_messages((REPO_ROOT / rel).read_text(), catalog)
    # About 10 KB of bar 3's heap (docs/device.md); each message once.
    assert len(catalog.offsets) > 250
    assert sum(len(m) for m in catalog.offsets) > 8000
    assert all("\n" not in m and len(m) > 10 for m in catalog.offsets)


SAMPLE = '''\
"""A module."""
from __future__ import annotations
import os

def f(x, log):
    log("a message of some length: %s" % (x,))
    if x:
        raise ValueError(
            "a message written"
            " on two lines"
        )
    log(f"an f-string {x} is left alone")
    log("short")
    os.getenv("NOT_A_MESSAGE_ARGUMENT")
    log("%(name)s: its values cannot be counted" % {"name": x})
    log("longer than the device reads back at once: 256 bytes and more ..." + x)
    raise ValueError("a line\\nbreak stays")
'''.replace("...", "." * 200)


def test_what_is_moved_and_what_is_not() -> None:
    catalog = Catalog()
    moved = move_messages(SAMPLE, catalog)
    assert list(catalog.offsets) == [
        "a message of some length: %s",
        "a message written on two lines",
    ]
    lines = moved.splitlines()
    # After the docstring and the __future__ import; the rest line for line.
    assert lines[2] == _IMPORT
    # Byte offsets in the catalog: the first message's line is 29 bytes with its break.
    assert lines[6] == "    log(_text(0, 1) % (x,))"
    assert lines[8:12] == ["        raise ValueError(", "            _text(29, 0)", "", "        )"]
    assert 'f"an f-string {x} is left alone"' in moved
    assert 'log("short")' in moved
    assert '"NOT_A_MESSAGE_ARGUMENT"' in moved
    assert '"a line\\nbreak stays"' in moved
    assert '"%(name)s: its values cannot be counted"' in moved
    assert "longer than the device reads back at once" in moved
    # The same text in two modules is one line of the catalog.
    assert move_messages(SAMPLE, catalog) == moved
    assert len(catalog.offsets) == 2


@pytest.mark.parametrize(
    ("message", "values"),
    [
        ("plain", 0),
        ("%s of %s", 2),
        ("%d%% of %02x bytes", 2),
        ("%5.1f s", 1),
        ("%(a)s", None),
        ("%*d", None),
        ("at 100%", None),
        ("% d", 1),
    ],
)
def test_the_values_a_message_takes(message, values) -> None:
    assert values_taken(message) == values


def test_a_module_without_messages_is_unchanged() -> None:
    source = 'X = "a constant of some length"\n'
    assert move_messages(source, Catalog()) == source
