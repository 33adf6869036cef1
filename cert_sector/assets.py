"""Names of the release assets, shared by the publisher and the device.

A release of a repo managed by lcm carries:

  manifest.lcm   the signed manifest (cert_sector.manifest)
  pack.lcm       every file of the release concatenated in manifest order;
                 the device reads the byte ranges it needs with Range requests
  certs.sector   the repo's current signed cert sector (cert_sector.sector)
  certs.chain    every sector the repo has published, oldest first, ending with
                 certs.sector: how a device several root rotations behind catches up
                 (each member: u16 length | sector; at most MAX_CHAIN_SIZE bytes)
  SHA256SUMS     human-readable checksums of the assets above (not trusted by devices)
  beta.tag       on the latest full release only: the tag of the newest release
                 of any channel, so beta devices find prereleases without the REST API
  rollout.lcm    optional: the signed share of the fleet that may take this release
                 (cert_sector.rollout; staged roll-outs)
"""

MANIFEST_ASSET = "manifest.lcm"
PACK_ASSET = "pack.lcm"
SECTOR_ASSET = "certs.sector"
CHAIN_ASSET = "certs.chain"
MAX_CHAIN_SIZE = 65536
# The most a manifest.lcm may be: 1024 bytes of header with MAX_BOARDS (8) boards of 33,
# and MAX_FILES (512) records of 1 + MAX_PATH (128) + 40 bytes (cert_sector.manifest; a
# test checks the sum). Here so that the device budgets for it before loading the parser.
MAX_MANIFEST_SIZE = 1024 + 8 * 33 + 512 * (1 + 128 + 40)
# A manifest's signature trailer: key id (8) | r‖s (64), cert_sector.keys' KEY_ID_SIZE +
# SIGNATURE_SIZE (a test checks the sum). Here so that the device reads the signer's id
# before it loads the parser, and the parser does not load cert_sector.keys.
SIGNATURE_BLOCK = 8 + 64
SUMS_ASSET = "SHA256SUMS"
BETA_POINTER_ASSET = "beta.tag"
ROLLOUT_ASSET = "rollout.lcm"
MAX_TAG = 64
