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

Speed and memory: points are in Jacobian coordinates (no inversion per
step); both scalars are recoded into signed base-8 digits (-4..4) and
consumed together against tables of 1..4 times G and Q in affine form (mixed
additions are cheaper; a negative digit negates y for free), so a verify
costs 258 doublings and about 150 additions, and the tables hold only four
points each (the heap, not the clock, is the scarcer resource on an
ESP8266). They are made affine with one modular inversion (Montgomery's
trick). G's table is a constant (frozen into flash on a board, so no heap);
tests/test_p256.py checks it against `_table(_GX, _GY)`.
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

# Signed base-8 windows: tables of 1..4 times a point, 87 digits per scalar.
_WINDOW_POINTS = const(4)
_DIGITS = const(87)

# Affine 1·G .. 4·G: the first coordinates of _table(_GX, _GY), written out.
_G_XS = (
    0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296,
    0x7CF27B188D034F7E8A52380304B51AC3C08969E277F21B35A60B48FC47669978,
    0x5ECBE4D1A6330A44C8F7EF951D4BF165E6C6B721EFADA985FB41661BC6E7FD6C,
    0xE2534A3532D08FBBA02DDE659EE62BD0031FE2DB785596EF509302446B030852,
)
_G_YS = (
    0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5,
    0x07775510DB8ED040293D9AC69F7430DBBA7DADE63CE982299E04B79D227873D1,
    0x8734640C4998FF7E374B06CE1A64A2ECD82AB036384FB83D9A79B127A27D5032,
    0xE0F1575A4C633CC719DFEE5FDA862D764EFC96C3F30EE0055C42C23F184ED8C6,
)


def _double(x, y, z):
    # dbl-2001-b for a = -3; the caller never passes infinity (z == 0).
    p = _P
    delta = z * z % p
    gamma = y * y % p
    beta = x * gamma % p
    alpha = 3 * (x - delta) * (x + delta) % p
    x3 = (alpha * alpha - 8 * beta) % p
    z3 = ((y + z) * (y + z) - gamma - delta) % p
    y3 = (alpha * (4 * beta - x3) - 8 * gamma * gamma) % p
    return x3, y3, z3


def _add_affine(x1, y1, z1, x2, y2):
    """Jacobian (x1, y1, z1) + affine (x2, y2); z1 == 0 means infinity."""
    p = _P
    if z1 == 0:
        return x2, y2, 1
    zz = z1 * z1 % p
    h = (x2 * zz - x1) % p
    r = (y2 * zz * z1 - y1) % p
    if h == 0:
        if r == 0:
            return _double(x1, y1, z1)
        return 0, 1, 0  # P + (-P)
    hh = h * h % p
    hhh = hh * h % p
    v = x1 * hh % p
    x3 = (r * r - hhh - 2 * v) % p
    y3 = (r * (v - x3) - y1 * hhh) % p
    return x3, y3, z1 * h % p


def _table(x, y):
    """Affine k·P for k = 1..4 as two lists (xs, ys); P has prime order, so none is infinity."""
    p = _P
    jac = [(x, y, 1), _double(x, y, 1)]
    for _ in range(2):
        a = jac[-1]
        jac.append(_add_affine(a[0], a[1], a[2], x, y))
    # Montgomery's trick: one inversion for all four z's.
    prefix = [1] * _WINDOW_POINTS
    acc = 1
    for i in range(_WINDOW_POINTS):
        prefix[i] = acc
        acc = acc * jac[i][2] % p
    inv = pow(acc, p - 2, p)
    xs = [0] * _WINDOW_POINTS
    ys = [0] * _WINDOW_POINTS
    for i in range(_WINDOW_POINTS - 1, -1, -1):
        jx, jy, jz = jac[i]
        jac[i] = None
        zi = inv * prefix[i] % p
        inv = inv * jz % p
        zi2 = zi * zi % p
        xs[i] = jx * zi2 % p
        ys[i] = jy * zi2 * zi % p
    return xs, ys


def _signed_digits(k):
    """Base-8 digits of `k` < 2^256 in -4..4, least significant first, stored +4."""
    out = bytearray(_DIGITS)
    carry = 0
    for i in range(_DIGITS):
        d = (k & 7) + carry
        k >>= 3
        if d > 4:
            d -= 8
            carry = 1
        else:
            carry = 0
        out[i] = d + 4
    return out


def public_key_is_valid(public_key):
    """Rule V2 for a 65-byte key; False for anything else."""
    return _decode_point(public_key) is not None


def _decode_point(public_key):
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
        q = _decode_point(public_key)  # Rules V1, V2
        if q is None:
            return False
        r = int.from_bytes(signature[:32], "big")
        s = int.from_bytes(signature[32:], "big")
        e = int.from_bytes(digest, "big")
    except (TypeError, ValueError):  # not bytes-like: a caller's mistake, still a refusal
        return False
    n = _N
    if not (0 < r < n and 0 < s < n):  # Rule V3
        return False
    w = pow(s, n - 2, n)
    u1 = _signed_digits(e * w % n)
    u2 = _signed_digits(r * w % n)

    gx, gy = _G_XS, _G_YS
    qx, qy = _table(q[0], q[1])

    # Rule V4: interleaved signed 3-bit windows, most significant first; a
    # negative digit adds the negated table point (x, p - y).
    p = _P
    x, y, z = 0, 1, 0
    for i in range(_DIGITS - 1, -1, -1):
        if z:
            x, y, z = _double(x, y, z)
            x, y, z = _double(x, y, z)
            x, y, z = _double(x, y, z)
        d = u1[i] - 4
        if d > 0:
            x, y, z = _add_affine(x, y, z, gx[d - 1], gy[d - 1])
        elif d < 0:
            x, y, z = _add_affine(x, y, z, gx[-d - 1], p - gy[-d - 1])
        d = u2[i] - 4
        if d > 0:
            x, y, z = _add_affine(x, y, z, qx[d - 1], qy[d - 1])
        elif d < 0:
            x, y, z = _add_affine(x, y, z, qx[-d - 1], p - qy[-d - 1])
    if z == 0:
        return False
    # x(R) = x / z² (mod p); compare with r without inverting: r·z² ≡ x, and
    # since x(R) may exceed n, also (r + n)·z² when r + n < p.
    zz = z * z % p
    if r * zz % p == x:
        return True
    return r + n < p and (r + n) * zz % p == x
