"""The captive portal of setup mode: DNS (`dns`), HTTP (`request`, `server`),
the form (`form`), the HTML (`page`) and one run of it (`session`).

See docs/portal.md. `lcm_device.wifi.setup_mode` is the entry point.
"""
