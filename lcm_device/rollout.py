"""Staged roll-outs on the device: does this device take the release now? (docs/fleet.md)

A release may carry `rollout.lcm` (cert_sector.rollout: a share of the fleet,
signed by a release key). The installer reads it right after the cert sector
(`gate`), only when the tag is new. A device outside the share, or any device
once the roll-out is halted, records the tag in /lcm/state/rollout.wait and
its check ends as `idle`. Its following checks stay one request (the
/releases/latest redirect): `waiting` answers from the file, and only every
_RECHECK-th check (about once a day at the default interval), or at once
after a push hint (`recheck`), is the document read again, with
If-None-Match (304 when unchanged). A halted roll-out is not read again: a
halt is final, the next release ends it.

Fail-closed: a device that has seen the document of a tag and then gets a
404 for it (the publisher replacing it) waits; a roll-out sequence below one
seen for the tag is refused (rule R5), so an older, narrower or un-halted
document cannot be replayed. The record of a tag stays when another tag has
no document (a server's detour through a tag of its own must not clear a
halt), and every tag whose document the device verified is also kept apart,
with the highest roll-out sequence seen and whether it was halted, in
/lcm/state/rollout.seen (the last _SEEN tags): a detour through another
release's roll-out, which replaces or removes the record, cannot make a
tag's document read afresh (R5 from 0), its halt forgotten, nor its 404
read as "no roll-out"; a document for a release not above the installed one
(a detour through the repo's history) is refused before anything is
recorded, so it cannot push a staged tag out of the last _SEEN. Both files
name their repo: a device pointed at another repo starts afresh, and keeps
the new repo's records from its first check on. Its ETag is kept only when
usable (lcm_device.trust.usable_etag: one the server chose could otherwise
make the record unreadable, or every re-read fail), and a 304 to a request
that sent no ETag is the server's error, not "unchanged". A document's
signer must be allowed this device's channel by its scope
(cert_sector.rollout, rule R3).
"""

import json

from cert_sector.assets import ROLLOUT_ASSET
from lcm_device.compat import const, unload
from lcm_device.hal.fs import makedirs, remove_if_exists, write_atomic

WAIT = "/lcm/state/rollout.wait"
SEEN = "/lcm/state/rollout.seen"
_SEEN = const(8)  # tags kept: the releases a fleet stages at once are few
_RECHECK = const(6)
_MAX_STATE = const(512)
# rollout.seen at its most: a 100-byte repo and 8 x ["<64-byte tag>", 4294967295, false]
_MAX_SEEN = const(1024)
_MAX_DOC = const(256)  # cert_sector.rollout.MAX_ROLLOUT_SIZE, without importing it for a 404


def _load(hal, repo, path=WAIT, cap=_MAX_STATE):
    """The record at `path` when it is this repo's (a device pointed at another repo
    starts afresh: the other's halts and waits are of its own tags), else None."""
    try:
        with open(hal.root + path) as f:
            w = json.loads(f.read(cap))
        # A record without a repo is an earlier manager's: of the repo it had then.
        return w if isinstance(w, dict) and w.get("repo", repo) == repo else None
    except (OSError, ValueError):
        return None


def _save(hal, w, path=WAIT):
    makedirs(hal.fs, hal.root + "/lcm/state")
    write_atomic(hal.fs, hal.root + path, json.dumps(w).encode())


def waiting(hal, repo, tag, log):
    """True when this device waits for `tag` and no re-read is due (a check of one request)."""
    w = _load(hal, repo)
    if w is None or w.get("tag") != tag:
        return False
    if w.get("halted"):
        log("app: the roll-out of " + tag + " is halted; waiting for the next release")
        return True
    left = w.get("skip") or 0
    if left <= 0:
        return False
    w["skip"] = left - 1
    _save(hal, w)
    log("app: " + tag + " is rolling out to " + str(w.get("share")) + " %, not to this device yet")
    return True


def recheck(hal, repo):
    """A push hint came: read the roll-out document again at the next check."""
    w = _load(hal, repo)
    if w is not None and not w.get("halted") and w.get("skip"):
        w["skip"] = 0
        _save(hal, w)


def gate(u, tag, sector, installed):
    """After the cert sector: the verified Rollout this device takes part in, None when the
    release has no roll-out document (the whole fleet), or "wait". `installed`: the order
    (epoch << 32 + sequence) of what is installed; a document for a release not above it
    is refused before anything is recorded.

    It then releases this module and cert_sector.rollout (sys.modules and their
    packages' attributes): once the caller lets go of `gate`, their heap returns for
    the install (a board with the manager as .mpy files has little to spare).
    """
    try:
        return _gate(u, tag, sector, installed)
    finally:
        unload(["lcm_device.rollout", "cert_sector.rollout"], True)


def _gate(u, tag, sector, installed):
    from lcm_device.fetch import download
    from lcm_device.http import StatusError

    hal = u.hal
    w = _load(hal, u.repo)
    if w is not None and w.get("tag") != tag:
        w = None  # another release's wait: this one starts afresh
    seen = (_load(hal, u.repo, SEEN, _MAX_SEEN) or {}).get("tags")
    if not isinstance(seen, list):
        seen = []
    mine = None  # [tag, roll-out sequence, halted] of this tag, when seen before
    for e in seen:
        if isinstance(e, list) and len(e) == 3 and e[0] == tag and isinstance(e[1], int):
            mine = e
    if mine is not None and mine[2]:
        # Seen halted, whatever the server serves now (an older document, a 404).
        return _wait(u, None, tag, mine[1], None, True, None, None)
    headers = {"If-None-Match": w["etag"]} if w is not None and w.get("etag") else None
    doc = hal.root + WAIT + ".doc"
    try:
        # Through the file `doc`, as every asset: from where lcm_device.resolve found it.
        etag = download(u, u.url(tag, ROLLOUT_ASSET), doc, _MAX_DOC, headers)[2]
    except StatusError as exc:
        if exc.status == 304 and headers is not None:
            return _wait(u, w, tag, w.get("seq"), w.get("share"), False, w.get("etag"), None)
        if exc.status != 404:
            raise  # a 304 to no If-None-Match included: nothing of ours is unchanged
        if w is None and mine is None:
            # No roll-out: the release is for every device. Another tag's record stays.
            return None
        # Seen before, gone now (being replaced): fail closed.
        u.log("app: the roll-out document of " + tag + " is missing; waiting")
        return "wait"
    import binascii

    from cert_sector.rollout import takes_part, verify_rollout

    try:
        with open(doc, "rb") as f:
            data = f.read(_MAX_DOC)
    finally:
        remove_if_exists(hal.fs, doc)
    least = max((w or {}).get("seq") or 0, mine[1] if mine is not None else 0)
    r = verify_rollout(data, sector, u.repo, tag, least, u.channel)
    if r.manifest_seq < sector.first_seq or (sector.epoch << 32) + r.manifest_seq <= installed:
        # An older release's document (a detour through the repo's history): its manifest
        # would be refused as a roll-back; recorded, it would push a staged tag's record
        # out of the last _SEEN.
        from lcm_device.update import Refused

        raise Refused("roll-out document of %s: not above the installed release" % (tag,))
    # Noted before it is acted on: the newest last, the oldest dropped.
    seen = [e for e in seen if e is not mine]
    seen.append([tag, r.seq, r.halted])
    _save(hal, {"repo": u.repo, "tags": seen[-_SEEN:]}, SEEN)
    device = binascii.hexlify(hal.unique_id()).decode()
    if takes_part(r, device):
        remove_if_exists(hal.fs, hal.root + WAIT)
        u.log("app: " + tag + " rolls out to " + str(r.share) + " %, this device included")
        return r
    return _wait(u, w, tag, r.seq, r.share, r.halted, etag, device)


def _wait(u, w, tag, seq, share, halted, etag, device):
    from lcm_device.trust import usable_etag

    if etag is not None and not usable_etag(etag):
        etag = None  # kept, it would be sent back: the record's size and every re-read
    _save(
        u.hal,
        {"repo": u.repo, "tag": tag, "seq": seq, "share": share, "halted": halted,
         "etag": etag, "skip": _RECHECK - 1},
    )  # fmt: skip
    if halted:
        u.log("app: the roll-out of " + tag + " is halted; not installing it")
    elif device is not None or w is None:
        u.log("app: " + tag + " rolls out to " + str(share) + " %, not to this device yet")
    else:
        u.log("app: " + tag + " roll-out unchanged (" + str(share) + " %); waiting")
    return "wait"
