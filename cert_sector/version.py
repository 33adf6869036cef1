"""The manager's own version: what `min manager` in a manifest is compared with.

Here, not in lcm_device, because the publisher shows it too (`lcm --version`,
the demo's manager release) and nothing in publisher/ imports lcm_device.

A manager installed from a release takes its version from that release's
tag (boot.json `mgr_tag`); this is the version of the code as built, used by
a factory-provisioned manager that has no release yet.
"""

MANAGER_VERSION = "0.1.0"
