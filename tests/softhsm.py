"""A real PKCS#11 token for the tests: Debian's SoftHSM v2, in a temporary folder.

python-pkcs11 loads one module per process and SoftHSM reads its config
(SOFTHSM2_CONF) and its tokens once, when the module is loaded: so one
token store serves the whole test process, with every token initialised up
front. Tests tell their keys apart by label.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
UTIL = "/usr/bin/softhsm2-util"
PIN = "1234"
SO_PIN = "56781234"
TOKEN = "lcm"
EMPTY_TOKEN = "lcm-empty"  # a token that holds no key


class SoftHsm:
    def __init__(self) -> None:
        for path in (MODULE, UTIL):
            if not os.path.exists(path):
                raise RuntimeError(
                    f"{path} is missing: the PKCS#11 tests need SoftHSM "
                    "(sudo apt-get install -y softhsm2)"
                )
        self.root = Path(tempfile.mkdtemp(prefix="lcm-softhsm-"))
        atexit.register(shutil.rmtree, self.root, True)
        (self.root / "tokens").mkdir()
        self.conf = self.root / "softhsm2.conf"
        self.conf.write_text(
            f"directories.tokendir = {self.root / 'tokens'}\n"
            "objectstore.backend = file\nlog.level = ERROR\n"
        )
        # Before python-pkcs11 loads the module in this process (it reads it once).
        os.environ["SOFTHSM2_CONF"] = str(self.conf)
        for label in (TOKEN, EMPTY_TOKEN):
            subprocess.run(
                [UTIL, "--init-token", "--free", "--label", label, "--pin", PIN,
                 "--so-pin", SO_PIN],
                check=True,
                capture_output=True,
                env={**os.environ, "SOFTHSM2_CONF": str(self.conf)},
            )  # fmt: skip

    @property
    def env(self) -> dict[str, str]:
        """What `lcm` needs to use the token (module, PIN, config)."""
        return {"LCM_PKCS11_MODULE": MODULE, "LCM_PKCS11_PIN": PIN, "SOFTHSM2_CONF": str(self.conf)}

    def uri(self, label: str, token: str = TOKEN) -> str:
        return f"pkcs11:token={token};object={label}"

    def new_label(self, prefix: str) -> str:
        """A label no other test uses (the token store is shared by the process)."""
        return f"{prefix}-{uuid.uuid4().hex[:8]}"


_instance: SoftHsm | None = None


def softhsm() -> SoftHsm:
    """The process's SoftHSM token store, created on first use."""
    global _instance
    if _instance is None:
        _instance = SoftHsm()
    return _instance
