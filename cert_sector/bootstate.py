"""The device's boot state file format (lcm_device/slots.py, /main.py; read by the simulator).

Two generation files, written alternately (generation N to PATH % (N % 2)). Each is

  one line of JSON: an object with an integer "gen"
  one line of 16 hex digits: the first 8 bytes of SHA-256 of the JSON line

(each line ending in a newline, the whole at most MAX_STATE bytes).

Rules, enforced by `decode`:
  B1  the file ends with a newline and its last line is 16 characters
  B2  the checksum line is the SHA-256 prefix of the JSON line (a torn write,
      truncated or with a tail of 0xFF, fails it)
  B3  the JSON line is an object with an integer "gen"
"""

import json

# % 0 or % 1: one string, not a tuple of two (a tuple constant is an object in RAM on a
# board, through every boot).
PATH = "/lcm/state/boot%d.json"
MAX_STATE = 2048  # a state file is a few hundred bytes; longer is not one
_SUM_LEN = 16


def checksum(body):
    import binascii
    import hashlib

    return binascii.hexlify(hashlib.sha256(body).digest()[: _SUM_LEN // 2])


def decode(data):
    """The state in one generation file's bytes, or None when it is torn or damaged."""
    end = len(data) - _SUM_LEN - 2
    if end < 2 or data[-1:] != b"\n" or data[end : end + 1] != b"\n":  # Rule B1
        return None
    body = data[:end]
    if checksum(body) != data[end + 1 : -1]:  # Rule B2
        return None
    try:
        st = json.loads(body)
    except ValueError:
        return None
    if not isinstance(st, dict) or not isinstance(st.get("gen"), int):  # Rule B3
        return None
    return st


def encode(st):
    body = json.dumps(st).encode()
    return body + b"\n" + checksum(body) + b"\n"
