"""The shares of a restore under custody v2 (docs/custody.md section 5).

Used by :mod:`custodian.service.restores` for backups under a quorum KEK:

- :func:`prepare` (at the request): the requester's session key pair; its private
  half sealed to the requester's personal key; the payload gets the public half,
  its fingerprint and the scope hash.
- :func:`on_approve` (inside each approval's transaction): the approver opens
  their own shares of the scoped DEKs and seals each to the session key. Before
  quorum the releases are **locked** to the other holders who may still approve;
  the approval that completes the quorum lifts every lock and stores the
  releases. The entry lists the lock digests, or the SHA-256 of every release.
- :func:`dek` (in the session): the runner opens the releases the log lists with
  the session key and combines them under the commitments.
"""

from __future__ import annotations

import base64
from typing import Any

from custodian import approvals as A
from custodian.catalog import Backup
from custodian.custody import quorum as Q
from custodian.custody import release as RL
from custodian.errors import ConflictError
from custodian.people import Actor, AuthError
from custodian.secret import SecretBytes
from custodian.service import items
from custodian.service.context import HomeContext


def is_quorum(ctx: HomeContext, b: Backup) -> bool:
    """Whether ``b``'s DEK is under a quorum version (a migrated KEK's older versions may
    be on another backend: the version says, not the KEK)."""
    return ctx.catalog.kek_version(b.kek, b.kek_version).backend == "quorum"


def _manifest(ctx: HomeContext, kek: str, version: int, by: Actor | None) -> Q.Manifest:
    from custodian.backends.quorum import QuorumBackend

    ctx.check_kek(ctx.catalog.kek(kek), version, by, "restore.request")
    be = ctx.backend("quorum")
    assert isinstance(be, QuorumBackend)
    return be.manifest(kek, version)


def prepare(
    ctx: HomeContext, backups: list[Backup], by: Actor, action: str
) -> RL.SessionKey | None:
    """For a request that covers quorum backups: check who asks, and make the session
    key (None when no backup of the request is under a quorum KEK)."""
    quorum = [b for b in backups if is_quorum(ctx, b)]
    if not quorum:
        return None
    holds = sorted(
        {
            f"{b.kek} v{b.kek_version}"
            for b in quorum
            if by.name in {h.name for h in _manifest(ctx, b.kek, b.kek_version, by).holders}
        }
    )
    if holds:
        raise ctx.refused(
            by,
            action,
            "request:new",
            "the requester holds a share",
            f"{by.name} holds a share of {', '.join(holds)}: their own share and one approval "
            "would open those backups, so holders do not ask for restores; an operator asks. "
            "Nothing was requested.",
            AuthError,
        )
    try:
        _ = by.personal
    except AuthError:
        raise ctx.refused(
            by,
            action,
            "request:new",
            "no personal key",
            f"{by.name} has no personal key to keep a session key under (a service identity "
            "cannot hold one); a person asks for a restore of quorum backups. Nothing was "
            "requested.",
            AuthError,
        ) from None
    return RL.new_session_key(ctx.catalog.kek(quorum[0].kek).suite)


def payload(
    ctx: HomeContext,
    rid: str,
    expires: str,
    quorum: int,
    by: Actor,
    backups: list[str],
    target: str,
    sk: RL.SessionKey,
) -> dict[str, Any]:
    """Seal the session key's private half to the requester and describe the rest."""
    scope = RL.Scope(
        ctx.config.home_id, rid, by.name, sk.fingerprint, tuple(backups), target, expires, quorum
    )
    items.seal_session(ctx, by, rid, sk.private)
    sk.private.wipe()
    return {
        "custody": "quorum",
        "session_key": {
            "suite": sk.suite,
            "public_key": base64.b64encode(sk.public_key).decode(),
            "fingerprint": sk.fingerprint,
        },
        "scope_hash": RL.scope_hash(scope).hex(),
    }


def _session_public(r: A.Request) -> tuple[str, bytes, bytes]:
    sk = r.payload["session_key"]
    return (
        str(sk["suite"]),
        base64.b64decode(sk["public_key"]),
        bytes.fromhex(r.payload["scope_hash"]),
    )


def _groups(ctx: HomeContext, r: A.Request) -> dict[tuple[str, int], list[Backup]]:
    out: dict[tuple[str, int], list[Backup]] = {}
    for bid in r.backups:
        b = ctx.catalog.backup(bid)
        if is_quorum(ctx, b):
            out.setdefault((b.kek, b.kek_version), []).append(b)
    return out


def on_approve(
    ctx: HomeContext, r: A.Request, by: Actor, details: dict[str, Any], completes: bool
) -> None:
    """Inside the approval's transaction (after its TOTP check): release or lock."""
    if r.payload.get("custody") != "quorum":
        return
    suite, session_pub, scope = _session_public(r)
    decided = {d.custodian for d in r.decisions} | {by.name, r.requester}
    locks: dict[str, str] = {}
    releases: dict[str, str] = {}
    for (kek, version), backups in _groups(ctx, r).items():
        man = _manifest(ctx, kek, version, by)
        if by.name not in {h.name for h in man.holders}:
            raise ctx.refused(
                by,
                "request.approve",
                f"request:{r.id}",
                f"not a holder of {kek} v{version}",
                f"{by.name} holds no share of KEK {kek} v{version}, so their approval would "
                f"release nothing; its holders ({', '.join(h.name for h in man.holders)}) "
                "approve. Nothing was done.",
                ConflictError,
            )
        x = man.holder(by.name).x
        priv = items.holder_private(ctx, by, man)
        mine: dict[str, bytes] = {}
        for b in backups:
            qw = Q.QuorumWrap.decode(b.wrapped_dek)
            share = Q.open_share(qw, man, b.id, by.name, priv)
            info = _release_info(ctx, r, scope, b, man, qw, x)
            with share.value:
                mine[b.id] = Q.seal_release(share, suite, session_pub, info)
        if not completes:
            recipients = [
                (h.name, man.suite, h.public_key, h.fingerprint(man.suite))
                for h in man.holders
                if h.name not in decided
            ]
            lk = RL.lock(
                mine,
                home_id=ctx.config.home_id,
                request_id=r.id,
                scope=scope,
                approver=by.name,
                recipients=recipients,
            )
            name = f"lock/{r.id}/{by.name}/{kek}/v{version}"
            ctx.catalog.put_blob(name, "lock", lk.encode(), request=r.id)
            locks[name] = lk.digest()
            continue
        # the quorum: lift every earlier approver's lock of this group, then release all
        for lname, blob in ctx.catalog.blobs(r.id, "lock").items():
            if not lname.endswith(f"/{kek}/v{version}"):
                continue
            lk = RL.Lock.decode(blob)
            lifted = RL.unlock(
                lk,
                home_id=ctx.config.home_id,
                scope=scope,
                recipient=by.name,
                suite_name=man.suite,
                private_key=priv,
                fingerprint=man.holder(by.name).fingerprint(man.suite),
            )
            for bid, rb in lifted.items():
                n = f"release/{r.id}/{bid}/{man.holder(lk.approver).x}"
                releases[n] = ctx.catalog.put_blob(n, "release", rb, request=r.id)
        for bid, rb in mine.items():
            n = f"release/{r.id}/{bid}/{x}"
            releases[n] = ctx.catalog.put_blob(n, "release", rb, request=r.id)
    if locks:
        details["locks"] = locks
    if releases:
        details["releases"] = releases


def _release_info(
    ctx: HomeContext,
    r: A.Request,
    scope: bytes,
    b: Backup,
    man: Q.Manifest,
    qw: Q.QuorumWrap,
    x: int,
) -> bytes:
    """The info of share ``x`` of ``b`` released under ``r`` (built from signed data)."""
    return Q.release_info(
        home_id=ctx.config.home_id,
        request_id=r.id,
        scope_hash=scope,
        backup_id=b.id,
        manifest=man,
        deal_id=qw.deal_id,
        x=x,
        approver=man.at(x).name,
    )


def listed_releases(ctx: HomeContext, r: A.Request) -> dict[str, str]:
    """The releases the signed approvals of ``r`` list: {blob name: SHA-256}, from the
    ledger (entries whose hash chain and signatures held, read once per process), not
    from a scan of the whole log at every run."""
    info = ctx.ledger.verified().requests.get(r.id)
    return dict(info.releases) if info is not None else {}


def dek(ctx: HomeContext, r: A.Request, b: Backup, by: Actor) -> SecretBytes:
    """The DEK of quorum backup ``b`` in request ``r``'s session, from its releases."""
    import hashlib

    suite, _pub, scope = _session_public(r)
    man = _manifest(ctx, b.kek, b.kek_version, by)
    qw = Q.QuorumWrap.decode(b.wrapped_dek)
    listed = listed_releases(ctx, r)
    session_priv = items.session_private(ctx, by, r.id, suite)
    shares = []
    for h in man.holders:
        name = f"release/{r.id}/{b.id}/{h.x}"
        got = ctx.catalog.blob(name)
        if got is None:
            continue
        blob, _ = got
        if listed.get(name) != hashlib.sha256(blob).hexdigest():
            continue  # a release the log does not vouch for is not opened
        info = _release_info(ctx, r, scope, b, man, qw, h.x)
        shares.append(Q.open_release(blob, suite, session_priv, info, h.x))
    try:
        return Q.combine(qw, man, b.id, shares)
    finally:
        for s in shares:
            s.value.wipe()


def forget(ctx: HomeContext, r: A.Request) -> None:
    """A request that ended: its releases, locks and session key go (best effort)."""
    ctx.catalog.delete_blobs(r.id)
    ctx.keyring.delete(items.session_entry(r.requester, r.id))
