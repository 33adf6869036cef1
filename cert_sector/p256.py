"""ECDSA P-256 / SHA-256 signature verification in pure Python.

Runs unchanged on CPython and MicroPython (which has native big integers and
SHA-256 but no public-key crypto). Verification only: nothing secret is
handled here, so constant time is not a concern.

Rules enforced by `verify_p256`, in order (each returns False, never raises):

  V1  Lengths: public key 65 bytes, digest 32 bytes, signature 64 bytes.
  V2  The public key is an uncompressed SEC1 point (0x04 prefix) whose
      coordinates are below p and which lies on the curve (so it is not the
      point at infinity, which has no uncompressed encoding).
  V3  r and s are in [1, n-1].
  V4  R = (e/s)·G + (r/s)·Q is not the point at infinity and x(R) ≡ r (mod n).

Speed and memory (the heap, not the clock, is the scarcer resource on an
ESP8266): the sum R is in Jacobian coordinates (no inversion per step); both
scalars are recoded into signed base-8 digits (-4..4) and consumed together
against tables of 1..4 times G and Q in affine form (mixed additions are
cheaper; a negative digit negates y for free), so a verify costs 258
doublings and about 150 additions. G's table is a constant (frozen into
flash on a board, so no heap); Q's is made with three affine steps (one
inversion each, and only the table itself held). The whole verify is one
function: on a board with frozen code every function object costs RAM, and
intermediate points that would pass between functions stay alive in both
frames. Every value that outlives a step is cut to its size (`v - 0`):
MicroPython's remainder keeps the digits of the product it came from, twice
what a coordinate needs. tests/test_p256.py checks G's table.
"""

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


# Curve parameters (FIPS 186-4, D.1.2.3). y² = x³ - 3x + b over GF(p).
_P = const(0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF)
_N = const(0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551)
_B = const(0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B)
_GX = const(0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296)
_GY = const(0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5)

# Signed base-8 digits of a scalar below 2^256.
_DIGITS = const(87)

# Affine 1·G .. 4·G as x1, y1, x2, y2, ..., written out (tests/test_p256.py
# recomputes them).
_G_TABLE = (
    0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296,
    0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5,
    0x7CF27B188D034F7E8A52380304B51AC3C08969E277F21B35A60B48FC47669978,
    0x07775510DB8ED040293D9AC69F7430DBBA7DADE63CE982299E04B79D227873D1,
    0x5ECBE4D1A6330A44C8F7EF951D4BF165E6C6B721EFADA985FB41661BC6E7FD6C,
    0x8734640C4998FF7E374B06CE1A64A2ECD82AB036384FB83D9A79B127A27D5032,
    0xE2534A3532D08FBBA02DDE659EE62BD0031FE2DB785596EF509302446B030852,
    0xE0F1575A4C633CC719DFEE5FDA862D764EFC96C3F30EE0055C42C23F184ED8C6,
)


def decode_public_key(public_key):
    """Rule V2: the point (x, y) of a 65-byte uncompressed key, or None."""
    if len(public_key) != 65 or public_key[0] != 4:
        return None
    x = int.from_bytes(public_key[1:33], "big")
    y = int.from_bytes(public_key[33:65], "big")
    p = _P
    if x >= p or y >= p:
        return None
    if (y * y - (x * x * x - 3 * x + _B)) % p != 0:
        return None
    return x, y


def verify_p256(public_key, digest, signature):
    """True only when `signature` (64 bytes r‖s) by `public_key` (65 bytes) signs `digest`."""
    try:
        if len(digest) != 32 or len(signature) != 64:  # Rule V1
            return False
        q = decode_public_key(public_key)  # Rules V1, V2
        if q is None:
            return False
        r = int.from_bytes(signature[:32], "big")
        s = int.from_bytes(signature[32:], "big")
        e = int.from_bytes(digest, "big")
    except (TypeError, ValueError):  # not bytes-like: a caller's mistake, still a refusal
        return False
    p, n = _P, _N
    if not (0 < r < n and 0 < s < n):  # Rule V3
        return False

    # u1 = e/s and u2 = r/s as signed base-8 digits, least significant first,
    # stored +4 and interleaved: digits[2i + 1] is u1's i-th (for G), digits[2i] u2's.
    digits = bytearray(2 * _DIGITS)
    s = pow(s, n - 2, n)
    for i, u in ((1, e * s % n), (0, r * s % n)):
        carry = 0
        while i < 2 * _DIGITS:
            d = (u & 7) + carry
            u >>= 3
            carry = 0
            if d > 4:
                d -= 8
                carry = 1
            digits[i] = d + 4
            i += 2
    e = s = 0  # dropped: the heap they hold is needed below

    # The table, as _G_TABLE: k·G at t[2k - 2], t[2k - 1] and k·Q at t[2k + 6],
    # t[2k + 7], k = 1..4. Q has prime order n > 4, so no k·Q is infinity and
    # 2Q, 3Q are not ±Q: each step is Q + Q (tangent) or (k-1)·Q + Q (chord),
    # with a non-zero denominator.
    x, y = q
    q = None
    t = list(_G_TABLE)
    t.extend((x, y, 0, 0, 0, 0, 0, 0))  # one resize ([*a, b] is no MicroPython syntax)
    for j in range(8, 14, 2):  # (x1, y1) = t[j], t[j + 1] is the last point made
        x1 = t[j]
        if j > 8:
            m = (t[j + 1] - y) * pow((x1 - x) % p, p - 2, p) % p
        else:
            m = 3 * (x * x - 1) * pow(2 * y, p - 2, p) % p  # a = -3
        x1 = (m * m - x1 - x) % p
        t[j + 2] = x1 - 0
        t[j + 3] = (m * (x - x1) - y) % p - 0

    # Rule V4: R = u1·G + u2·Q, most significant digits first: R = 8R, then
    # R += d·G, then R += d·Q (a negative digit adds (x, p - y)). R is Jacobian
    # (x, y, z); z == 0 is the point at infinity.
    x, y, z = 0, 1, 0
    for i in range(2 * _DIGITS - 1, -1, -1):
        todo = 3 if i & 1 and z else 0  # doublings, before each pair of digits
        d = digits[i] - 4
        while todo or d:
            if todo:
                # R = 2R: dbl-2001-b for a = -3 (R is not infinity here, and a point
                # of odd order never doubles to it).
                m = z * z % p  # delta
                a = 3 * (x - m) * (x + m) % p  # alpha
                z = 2 * y * z % p - 0
                y = y * y % p  # gamma
                m = x * y % p  # beta
                x = (a * a - 8 * m) % p - 0
                y = (a * (4 * m - x) - 8 * y * y) % p - 0
                todo -= 1
                continue
            k = 2 * abs(d) + (-2 if i & 1 else 6)
            tx = t[k]
            ty = t[k + 1] if d > 0 else p - t[k + 1]
            d = 0
            if not z:
                x, y, z = tx, ty, 1
                continue
            # R = R + T, T = (tx, ty) affine (madd for Jacobian + affine).
            a = z * z % p
            h = (tx * a - x) % p
            m = (ty * a * z - y) % p
            if not h:
                if m:
                    x, y, z = 0, 1, 0  # R = -T: the sum is infinity
                else:
                    todo = 1  # R = T: R + T = 2R
                continue
            z = z * h % p - 0
            a = h * h % p  # h²
            h = a * h % p  # h³
            a = x * a % p  # x·h²
            x = (m * m - h - 2 * a) % p - 0
            y = (m * (a - x) - y * h) % p - 0
    if z == 0:
        return False
    # x(R) = x / z² (mod p); compare with r without inverting: r·z² ≡ x, and
    # since x(R) may exceed n, also (r + n)·z² when r + n < p.
    z = z * z % p
    if r * z % p == x:
        return True
    return r + n < p and (r + n) * z % p == x
