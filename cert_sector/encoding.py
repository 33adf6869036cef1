"""Bounded big-endian reading and writing shared by the cert sector and the manifest.

`Reader` reads from bytes or from a stream (a file on flash) and checks every
length against what is left before using it, so a hostile length can neither
read past the end nor make the device allocate more than the declared maximum.
"""

import struct

from cert_sector.errors import FormatError


class Reader:
    """Reads fields from `data` (bytes) or from `stream` (has .read(n)), at most `limit` bytes."""

    def __init__(self, data=None, stream=None, limit=None):
        self._data = data
        self._stream = stream
        self.pos = 0
        if limit is None:
            if data is None:
                raise RuntimeError("a stream needs a limit")
            limit = len(data)
        self.limit = limit
        # Digest of everything read so far, when the caller asks for one (streamed manifests).
        self.hasher = None

    def take(self, n, what):
        if n < 0 or n > self.limit - self.pos:
            raise FormatError("truncated: " + what + " needs " + str(n) + " bytes")
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
            raise FormatError("truncated: " + what + " needs " + str(n) + " bytes")
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

    def u8(self, what):
        return self.take(1, what)[0]

    def u16(self, what):
        return struct.unpack(">H", self.take(2, what))[0]

    def u32(self, what):
        return struct.unpack(">I", self.take(4, what))[0]

    def text(self, what, max_len):
        """A u8-length-prefixed UTF-8 string without control characters."""
        n = self.u8(what + " length")
        if n > max_len:
            raise FormatError(what + " longer than " + str(max_len) + " bytes")
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
        raise FormatError(what + " longer than " + str(max_len) + " bytes")
    for c in raw:
        if c < 0x20 or c == 0x7F:
            raise FormatError(what + " contains a control character")
    return bytes([len(raw)]) + raw


_REPO_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_."


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
