"""Text a device or a host sent, made safe to print on a terminal."""


def printable(text: str) -> str:
    """`text` with control characters shown as escapes (no terminal escape injection)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
