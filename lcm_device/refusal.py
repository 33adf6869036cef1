"""The engine's own refusal, next to cert_sector's TrustError: a release not installed."""


class Refused(Exception):
    """A release refused for a reason that retrying will not change; the message says why."""
