"""Bounded big-endian reading and writing shared by the cert sector and the manifest.

`Reader` reads from bytes or from a stream (a file on flash) and checks every
length against what is left before using it, so a hostile length can neither
read past the end nor make the device allocate more than the declared maximum.
"""

from cert_sector.errors import FormatError

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


class Reader:
    """Reads fields from `data` (bytes) or else from `stream` (has .read(n)), at most
    `limit` bytes. No argument has a default: on a board a default costs RAM."""

    def __init__(self, data, stream, limit):
        self._data = data
        self._stream = stream
        self.pos = 0
        self.limit = limit
        # Digest of everything read so far, when the caller asks for one (streamed manifests).
        self.hasher = None

    def take(self, n, what):
        if n < 0 or n > self.limit - self.pos:
            raise FormatError("truncated: %s needs %s bytes" % (what, n))
        if self._data is not None:
            out = self._data[self.pos : self.pos + n]
        else:
            out = self._stream.read(n) if n else b""
            if out is None or len(out) != n:
                raise FormatError("truncated: " + what)
        self.pos += n
        if self.hasher is not None:
            self.hasher.update(out)
        return out

    def skip(self, n, what, buf):
        """Read past `n` bytes through `buf` (hashed when hashing): a field that stays on
        flash (a stream) instead of in memory."""
        if n < 0 or n > self.limit - self.pos:
            raise FormatError("truncated: %s needs %s bytes" % (what, n))
        if self._data is not None:
            if self.hasher is not None:
                self.hasher.update(self._data[self.pos : self.pos + n])
        else:
            mv = memoryview(buf)
            left = n
            while left:
                k = self._stream.readinto(mv[: min(left, len(mv))])
                if not k:
                    raise FormatError("truncated: " + what)
                if self.hasher is not None:
                    self.hasher.update(mv[:k])
                left -= k
        self.pos += n

    def uint(self, size, what):
        """An unsigned big-endian integer of `size` bytes (1, 2 or 4: u8, u16, u32)."""
        return int.from_bytes(self.take(size, what), "big")

    def text(self, what, max_len):
        """A u8-length-prefixed UTF-8 string without control characters."""
        n = self.uint(1, what + " length")
        if n > max_len:
            raise FormatError("%s longer than %s bytes" % (what, max_len))
        raw = bytes(self.take(n, what))
        for c in raw:
            if c < 0x20 or c == 0x7F:
                raise FormatError(what + " contains a control character")
        try:
            return raw.decode("utf-8")
        except UnicodeError:
            raise FormatError(what + " is not UTF-8") from None

    def end(self, what):
        """Rule: no trailing bytes after the last field."""
        if self.pos != self.limit:
            raise FormatError(str(self.limit - self.pos) + " trailing bytes after " + what)


def pack_text(value, what, max_len):
    raw = value.encode("utf-8")
    if len(raw) > max_len:
        raise FormatError("%s longer than %s bytes" % (what, max_len))
    for c in raw:
        if c < 0x20 or c == 0x7F:
            raise FormatError(what + " contains a control character")
    return bytes([len(raw)]) + raw


_REPO_CHARS = const("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def check_repo(repo):
    """`owner/name` as GitHub allows: letters, digits, '-', '_', '.'; one slash."""
    parts = repo.split("/")
    if len(parts) != 2:
        raise FormatError("repo must be owner/name, got " + repr(repo))
    for part in parts:
        if not part or len(part) > 100 or part in (".", ".."):
            raise FormatError("repo must be owner/name, got " + repr(repo))
        for ch in part:
            if ch not in _REPO_CHARS:
                raise FormatError("repo has an invalid character: " + repr(repo))
    return repo
