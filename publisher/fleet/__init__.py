"""The fleet over MQTT, publisher side: push hints, statuses, dashboard (docs/fleet.md)."""
