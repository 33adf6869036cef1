"""Move the device code's messages out of its .mpy files, into a catalog.

A string constant of a module loaded from a .mpy file is an object in the heap for
as long as the module is loaded: 32 bytes on the 64-bit port, and the text rounded
up to 16 bytes. The update path's messages (what it logs, what it raises) are
about 10 KB of a one-file update's heap that way (bar 3, docs/device.md), though a
board shows few of them in a check. So the .mpy build (publisher/micropython.py)
takes each one out of the source it compiles, writes it as one line of
`lcm_device/catalog.txt`, and leaves `_text(N, K)` in its place, N the byte
offset of that line: lcm_device.compat's `text` reads it from flash (one seek, one
read of at most MAX_MESSAGE + 1 bytes) when the message is made, and returns the
very string the source wrote. K is how many values its `%` specifiers take:
without a readable catalog it returns a text that takes as many, so that the code
goes on as it would (a `%` that did not match would raise a TypeError in place of
the message's error).
The sources, the frozen build and the CPython side keep their strings and never
read the catalog.

What is moved, so that the code means the same:
- a str constant of more than MicroPython's interning length (10 characters:
  shorter ones are interned names, a few bytes each),
- inside a `raise` statement or a call of a logging function (`SINKS`), the places
  a message is made once and then only shown,
- not inside an f-string (its parts are not whole strings), not containing a
  line break or a backslash (the catalog is one message a line, unescaped), not
  longer than MAX_MESSAGE bytes of UTF-8 (what `text` reads at most), and
  not with a `%` specifier other than a plain one (`%s`, `%5d`, `%02x`, `%%`...:
  no `%(name)s`, no `*`), whose values could not be counted.
Lines are kept: a multi-line literal becomes `_text(N, K)` and as many line breaks.
"""

from __future__ import annotations

import ast
import re

# Longer strings become objects in the heap; MicroPython interns shorter ones
# (MICROPY_ALLOC_PARSE_INTERN_STRING_LEN).
INTERN_LENGTH = 10
# The catalog, inside a build folder and a manager slot, and the module that reads it
# (beside itself): every module of the update path imports it already.
CATALOG = "lcm_device/catalog.txt"
TEXT_MODULE = "lcm_device/compat.py"
# Calls whose string arguments are messages: the device's loggers.
SINKS = frozenset({"log", "safe_log", "_log", "note"})
# The longest message moved, in bytes: lcm_device.compat.text reads this many and the
# line break (its _MESSAGE_READ).
MAX_MESSAGE = 255
_IMPORT = "from lcm_device.compat import text as _text\n"
# A `%` specifier that takes one value, or `%%`; any other `%` keeps a string in the code.
_SPECIFIER = re.compile(r"%(%|[-#0 +]*[0-9]*(?:\.[0-9]+)?[diouxXeEfFgGcrsa])")


def values_taken(message: str) -> int | None:
    """How many values `message`'s `%` specifiers take; None: one is not plain."""
    found = _SPECIFIER.findall(message)
    if message.count("%") != sum(2 if s == "%" else 1 for s in found):
        return None
    return sum(1 for s in found if s != "%")


class Catalog:
    """The messages moved so far, each once, in the order first met, by the byte offset of
    their line in the catalog file."""

    def __init__(self) -> None:
        self.offsets: dict[str, int] = {}
        self._size = 0

    def offset(self, message: str) -> int:
        if message not in self.offsets:
            self.offsets[message] = self._size
            self._size += len(message.encode()) + 1
        return self.offsets[message]

    def data(self) -> bytes:
        """The catalog file: one message a line, UTF-8."""
        return b"".join(m.encode() + b"\n" for m in self.offsets)


def _is_sink(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    name = (
        func.id
        if isinstance(func, ast.Name)
        else func.attr
        if isinstance(func, ast.Attribute)
        else None
    )
    return name in SINKS


def messages_of(tree: ast.AST) -> list[tuple[ast.Constant, str, int]]:
    """The string constants of `tree` that are messages (the module's rules), with their text
    and the values their `%` specifiers take."""
    inside: set[int] = set()
    fstring_parts: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) or _is_sink(node):
            inside.update(id(sub) for sub in ast.walk(node))
        elif isinstance(node, ast.JoinedStr):
            fstring_parts.update(id(sub) for sub in ast.walk(node))
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
            continue
        text = node.value
        if (
            len(text) > INTERN_LENGTH
            and id(node) in inside
            and id(node) not in fstring_parts
            and not any(c in text for c in "\n\r\\")
            and len(text.encode()) <= MAX_MESSAGE
        ):
            values = values_taken(text)
            if values is not None:
                found.append((node, text, values))
    return found


def move_messages(source: str, catalog: Catalog, home: bool = False) -> str:
    """`source` with its messages replaced by `_text(N, K)`, N their offsets in `catalog`
    (which gains those it did not have), and the import of `_text` after the module's
    docstring and `__future__` imports. Unchanged when it has none. `home`: the source is
    TEXT_MODULE's, which calls its own `text` (an import of itself would fail)."""
    tree = ast.parse(source)
    found = messages_of(tree)
    if not found:
        return source
    # The import's place: after the docstring and __future__ imports, which come first.
    at = 0
    for i, stmt in enumerate(tree.body):
        docstring = i == 0 and isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)
        if not (docstring or (isinstance(stmt, ast.ImportFrom) and stmt.module == "__future__")):
            break
        at = stmt.end_lineno or stmt.lineno
    lines = source.splitlines(keepends=True)
    # In reading order (the catalog's order), replaced from the end so that positions hold.
    found.sort(key=lambda message: (message[0].lineno, message[0].col_offset))
    name = "text" if home else "_text"
    calls = [(node, f"{name}({catalog.offset(text)}, {values})") for node, text, values in found]
    for node, call in reversed(calls):
        first, last = node.lineno - 1, (node.end_lineno or node.lineno) - 1
        # Columns are UTF-8 byte offsets.
        head = lines[first].encode()[: node.col_offset].decode()
        tail = lines[last].encode()[node.end_col_offset :].decode()
        lines[first : last + 1] = [head + call + "\n" * (last - first) + tail]
    if not home:
        lines.insert(at, _IMPORT)
    return "".join(lines)
