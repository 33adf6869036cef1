"""`lcm release`: build, publish, verify and list signed releases.

Split by concern:

  source.py    walk an app folder safely (no escaping symlinks, bounded sizes)
  mpy.py       optional compilation of the app's modules with mpy-cross
  firmware.py  check a firmware .bin with esptool's image parser
  build.py     manifest + pack + SHA256SUMS: the assets of one release
  github.py    the PyGithub session: retries, drafts, idempotent uploads
  publish.py   the publish procedure (draft, upload, publish, beta pointer)
  web.py       bounded downloads through browser URLs (what a device does)
  verify.py    check a published release exactly as a device would
  listing.py   what `lcm release list` shows
"""
