"""The publisher's error tree: one base type, caught at the command edge."""


class PublisherError(Exception):
    """Anything the publisher refuses or cannot do; its message is shown to the user."""
