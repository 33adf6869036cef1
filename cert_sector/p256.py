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
scalars are recoded in non-adjacent form (digits -1, 0, 1, a third of them
non-zero on average) and consumed together (Shamir's trick) against G and Q
themselves, so a verify costs 256 doublings and about 171 mixed additions
(Jacobian + affine; a negative digit negates y for free) and no table at all:
no multiples of Q to make (they cost inversions) or to hold.
The whole verify is one function: on a board with frozen code every function
object costs RAM, and a point passed to a helper stays alive in both frames.
Every value that outlives a step is cut to its size (`v - 0`): MicroPython's
remainder keeps the digits of the product it came from, twice what a
coordinate needs.
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

# Digits of a scalar below n < 2^256 in non-adjacent form: at most 257.
_BITS = const(257)


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

    # u1 = e/s and u2 = r/s in non-adjacent form, read most significant digit first
    # without storing the digits: digit i of the NAF of u is bit i+1 of 3u minus
    # bit i+1 of u (3u - u = 2u, and that difference has no two adjacent non-zero
    # digits). Nothing is allocated for the digits (a 257-byte table here was the
    # allocation that failed first in a small, fragmented heap).
    s = pow(s, n - 2, n)
    u1 = e * s % n - 0
    u2 = r * s % n - 0
    e = s = 0  # dropped: the heap they hold is needed below
    h1 = 3 * u1
    h2 = 3 * u2

    # Rule V4: R = u1·G + u2·Q, most significant bit first: R = 2R, then
    # R += ±G, then R += ±Q (-P is (x, p - y)). R is Jacobian (x, y, z);
    # z == 0 is the point at infinity.
    qx, qy = q
    q = None
    x = z = 0
    y = 1
    for i in range(_BITS, 0, -1):
        todo = 1 if z else 0  # the doubling
        g = (h1 >> i & 1) - (u1 >> i & 1)  # G's digit
        d = (h2 >> i & 1) - (u2 >> i & 1)  # Q's digit
        while todo or g or d:
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
                todo = 0
                continue
            if g:
                tx = _GX
                ty = _GY if g > 0 else p - _GY
                g = 0
            else:
                tx = qx
                ty = qy if d > 0 else p - qy
                d = 0
            if not z:
                x, y, z = tx, ty, 1
                continue
            # R = R + T, T = (tx, ty) affine (madd for Jacobian + affine).
            a = z * z % p
            h = (tx * a - x) % p
            m = (ty * (a * z % p) - y) % p  # two products, not one of three coordinates
            if not h:
                if m:
                    x = z = 0  # R = -T: the sum is infinity
                    y = 1
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
