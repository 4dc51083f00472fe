"""Sealing to the break-glass recovery key, shared by the capabilities that do it.

The recovery key to seal to comes from the verified signed log (the last
``breakglass.split``, ``reshare`` or ``rekey`` entry, which >= T of the set's
holders signed), never from the catalog: an edited catalog row cannot redirect
a seal (docs/custody.md section 10). Whoever seals records the blobs' SHA-256
in a signed ``breakglass.seal`` entry (or in the set's own entry); recovery
installs only blobs whose digest the log lists.

``svc.keys.create_quorum`` seals each new holder key here when a set exists; when
none exists yet, the holder keys are sealed at the next split by the holders
present (:func:`holder_keys_of`), and ``breakglass status`` names those that are
not covered.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from custodian.custody import holders as H
from custodian.custody import personal
from custodian.people import Actor
from custodian.secret import SecretBytes
from custodian.service.context import HomeContext

if TYPE_CHECKING:
    from custodian.custody.quorum import Manifest
    from custodian.ledger import BreakGlassInfo

KIND = "recovery"  # custody_blobs.kind of every blob sealed to the recovery key


def target(ctx: HomeContext) -> BreakGlassInfo | None:
    """The current set as the verified log announced it (its public key is the one to
    seal to), or None when the home has no break-glass set yet."""
    return ctx.log_state().breakglass


def vouch(ctx: HomeContext, by: Actor, fingerprint: str, blobs: dict[str, bytes]) -> None:
    """Store ``blobs`` (sealed to the recovery key ``fingerprint``) and sign their digests
    (``breakglass.seal``); call inside the transaction of the action that made them."""
    if not blobs:
        return
    for name, blob in blobs.items():
        ctx.catalog.put_blob(name, KIND, blob)
    ctx.record(
        by,
        "breakglass.seal",
        f"home:{ctx.config.home_id}",
        details={
            "fingerprint": fingerprint,
            "blobs": {n: H.blob_digest(b) for n, b in sorted(blobs.items())},
        },
    )


def seal_target(ctx: HomeContext) -> tuple[bytes | None, str]:
    """(public key, fingerprint) of the recovery key new holder keys are sealed to, from
    the verified log; (None, "") before the home has a break-glass set (then the holders
    present at the next split seal theirs)."""
    bg = target(ctx)
    return (bg.public_key, bg.fingerprint) if bg is not None else (None, "")


def vouch_holder_keys(
    ctx: HomeContext, by: Actor, kek: str, version: int, made: list[H.NewHolderKey]
) -> None:
    """Keep and vouch for the recovery seals of holder keys just made for ``kek``
    ``version`` (every path that makes one: creation, migration, refresh,
    redistribution, a replacement); inside the action's transaction."""
    bg = target(ctx)
    if bg is None:
        return
    blobs = {
        H.recovery_name(k.key.person, kek, version): k.recovery_blob
        for k in made
        if k.recovery_blob is not None
    }
    vouch(ctx, by, bg.fingerprint, blobs)


def quorum_manifests(ctx: HomeContext) -> list[Manifest]:
    """Every quorum KEK version not destroyed, its manifest checked against the log."""
    out = []
    for k in ctx.catalog.keks():
        be = ctx.backend("quorum")
        for v in k.versions:
            if v.state == "destroyed" or v.backend != "quorum":  # a migrated KEK: per version
                continue
            ctx.check_kek(k, v.version, None, "breakglass.seal")
            out.append(be.manifest(k.name, v.version))  # type: ignore[attr-defined]
    return out


def holder_keys_of(ctx: HomeContext, actor: Actor, public: bytes) -> dict[str, bytes]:
    """``actor``'s holder keys of every quorum version they hold (their personal key opens
    them), each sealed to the recovery key ``public``: name -> blob."""
    from custodian.service import items

    out: dict[str, bytes] = {}
    for m in quorum_manifests(ctx):
        if actor.name not in {h.name for h in m.holders}:
            continue
        item = items.get(ctx, items.holder_entry(actor.name, m.kek, m.version))
        if item is None:
            continue  # not on this keyring: status names it as not covered
        key = H.HolderKey(m.kek, m.version, actor.name, m.suite, m.holder(actor.name).public_key)
        with personal.open_item(
            actor.personal,
            item,
            home_id=ctx.config.home_id,
            person=actor.name,
            name=H.item_name(m.kek, m.version),
        ) as raw:
            if H.public_of(m.suite, raw) != key.public_key:
                continue  # not the manifest's key: never vouched for
            name = H.recovery_name(actor.name, m.kek, m.version)
            out[name] = H.seal_to_recovery(raw, public, home_id=ctx.config.home_id, name=name)
    return out


def uncovered(ctx: HomeContext) -> list[str]:
    """Holder keys (``holder/<kek>/v<n>/<person>``) that no vouched blob covers."""
    bg = target(ctx)
    have = set(bg.blobs) if bg is not None else set()
    return [
        H.recovery_name(h.name, m.kek, m.version)
        for m in quorum_manifests(ctx)
        for h in m.holders
        if H.recovery_name(h.name, m.kek, m.version) not in have
    ]


def reseal(blob: bytes, name: str, old_private: object, new_public: bytes, home_id: str) -> bytes:
    """A blob sealed to the old recovery key, opened and sealed to the new one (rekey)."""
    raw: SecretBytes = H.open_from_recovery(blob, old_private, home_id=home_id, name=name)
    with raw:
        return H.seal_to_recovery(raw, new_public, home_id=home_id, name=name)
