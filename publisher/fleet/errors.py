"""Errors of `lcm fleet` and the publisher's MQTT hint: each names what was wrong."""

from __future__ import annotations

from publisher.errors import PublisherError


class BrokerError(PublisherError):
    """The MQTT broker could not be reached, refused us, or did not confirm a message."""
