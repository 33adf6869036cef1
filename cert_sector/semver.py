"""Semantic versions as tags carry them: MAJOR.MINOR.PATCH with an optional -prerelease."""

from cert_sector.encoding import const
from cert_sector.errors import FormatError

_DIGITS = const("0123456789")
_IDENT = const("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-")


def _is_number(text):
    # ASCII only: str.isdigit() accepts other scripts' digits on CPython, not on MicroPython.
    return bool(text) and all(c in _DIGITS for c in text)


def parse_version(text):
    """A sortable key for `text` ("1.2.3" or "1.2.3-beta.1"; a leading "v" is allowed)."""
    if text.startswith("v"):
        text = text[1:]
    core, _, pre = text.partition("-")
    nums = core.split(".")
    if len(nums) != 3 or (text.endswith("-")):
        raise FormatError("version must be MAJOR.MINOR.PATCH[-PRE], got " + repr(text))
    key = []
    for n in nums:
        if not _is_number(n) or (len(n) > 1 and n[0] == "0") or len(n) > 9:
            raise FormatError("version must be MAJOR.MINOR.PATCH[-PRE], got " + repr(text))
        key.append(int(n))
    if not pre:
        # A release sorts after every prerelease of the same version.
        key.append((1,))
        return tuple(key)
    idents = []
    for ident in pre.split("."):
        if not ident or not all(c in _IDENT for c in ident):
            raise FormatError("invalid prerelease " + repr(pre))
        # Numeric identifiers sort before alphanumeric ones, numerically.
        idents.append((0, int(ident), "") if _is_number(ident) else (1, 0, ident))
    key.append((0, tuple(idents)))
    return tuple(key)


def version_at_least(version, minimum):
    """True when `version` >= `minimum` (an empty minimum accepts anything)."""
    return not minimum or parse_version(version) >= parse_version(minimum)
