"""Where a person's sealed items live, and how the service opens them.

Items under a person's personal key (docs/custody.md section 7) sit in the keyring
next to the personal key blob that opens them: ``holder:<person>:<kek>:v<n>`` for a
holder key, ``session:<person>:<request id>`` for the private half of a restore
session key. Shared by the capabilities that make or use them (keys, restores).
"""

from __future__ import annotations

import base64
from typing import Any

from custodian.custody import holders as H
from custodian.custody import personal
from custodian.custody.quorum import Manifest
from custodian.people import Actor, AuthError
from custodian.secret import SecretBytes
from custodian.service.context import HomeContext


def holder_entry(person: str, kek: str, version: int) -> str:
    return f"holder:{person}:{kek}:v{version}"


def session_entry(person: str, request_id: str) -> str:
    return f"session:{person}:{request_id}"


def put(ctx: HomeContext, entry: str, blob: bytes) -> None:
    ctx.keyring.set(entry, base64.b64encode(blob).decode())


def get(ctx: HomeContext, entry: str) -> bytes | None:
    v = ctx.keyring.get(entry)
    return base64.b64decode(v) if v is not None else None


def holder_private(ctx: HomeContext, actor: Actor, manifest: Manifest) -> Any:
    """``actor``'s private holder key of the manifest's version (their personal key opens
    it); refused clearly when they hold no share or this keyring lacks their key."""
    h = manifest.holder(actor.name)
    item = get(ctx, holder_entry(actor.name, manifest.kek, manifest.version))
    if item is None:
        raise AuthError(
            f"{actor.name}'s holder key of KEK {manifest.kek} v{manifest.version} is not in "
            "this keyring; use the workstation where it was made, or recover it with the "
            "break-glass shares. Nothing was released."
        )
    key = H.HolderKey(manifest.kek, manifest.version, actor.name, manifest.suite, h.public_key)
    try:
        return H.open_holder_key(item, actor.personal, key, home_id=ctx.config.home_id)
    except personal.PersonalKeyError as e:
        raise AuthError(str(e)) from None


def holder_private_raw(ctx: HomeContext, actor: Actor, manifest: Manifest) -> SecretBytes:
    """The same key as :func:`holder_private`, as its sealed encoding (for a worker
    process of a custody job; the caller checks it against the manifest and wipes it)."""
    manifest.holder(actor.name)
    item = get(ctx, holder_entry(actor.name, manifest.kek, manifest.version))
    if item is None:
        raise AuthError(
            f"{actor.name}'s holder key of KEK {manifest.kek} v{manifest.version} is not in "
            "this keyring; use the workstation where it was made, or recover it with the "
            "break-glass shares. Nothing was changed."
        )
    try:
        return personal.open_item(
            actor.personal,
            item,
            home_id=ctx.config.home_id,
            person=actor.name,
            name=H.item_name(manifest.kek, manifest.version),
        )
    except personal.PersonalKeyError as e:
        raise AuthError(str(e)) from None


def session_private(ctx: HomeContext, actor: Actor, request_id: str, suite: str) -> Any:
    from custodian.backends.local import load_private

    item = get(ctx, session_entry(actor.name, request_id))
    if item is None:
        raise AuthError(
            f"the session key of request {request_id[:8]} is not in this keyring (it is "
            "destroyed when the session closes or expires); nothing was decrypted."
        )
    with personal.open_item(
        actor.personal,
        item,
        home_id=ctx.config.home_id,
        person=actor.name,
        name=f"session/{request_id}",
    ) as raw:
        return load_private(suite, raw)


def seal_session(ctx: HomeContext, actor: Actor, request_id: str, private: SecretBytes) -> None:
    item = personal.seal_item(
        actor.personal,
        private,
        home_id=ctx.config.home_id,
        person=actor.name,
        name=f"session/{request_id}",
    )
    put(ctx, session_entry(actor.name, request_id), item)
