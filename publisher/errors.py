"""The publisher's error tree: one base type, caught at the command edge."""


class PublisherError(Exception):
    """Anything the publisher refuses or cannot do; its message is shown to the user."""


class OutputError(PublisherError):
    """A command's output file cannot be written where it was asked (-o)."""
