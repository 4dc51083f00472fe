"""``svc.custody``: the break-glass set of a home (docs/custody.md section 10).

- :meth:`Custody.split`: custodians present make a 256-bit recovery secret, split
  it T-of-N into SLIP-39 shares (returned to the caller to show one holder at a
  time, never stored), announce the recovery key (each custodian present signs its
  fingerprint in the log before the ``breakglass.split`` entry), and seal the
  recovery bundle (the KSK) to it; the bundle's SHA-256 is in the signed entry.
- :meth:`Custody.drill`: shares reconstruct the set's secret; nothing changes but
  the dated record of the drill.
- :meth:`Custody.recover`: on a machine whose keyring lost the KSK (or a copy of the
  home with no keyring), shares at threshold install the KSK again, after the
  recovered key's fingerprint and the bundle's hash match what the log announced.

What is stored: set id, threshold, count, holders, check value, the recovery
public key and its fingerprint, the time; never a share or the secret.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass

from custodian.custody import breakglass as BG
from custodian.custody import holders as H
from custodian.errors import ConflictError, CustodianError
from custodian.people import Actor
from custodian.service.context import HomeContext

META = "breakglass"
BUNDLE = "bundle/ksk"


@dataclass(frozen=True)
class BreakGlassSet:
    set_id: int
    threshold: int
    count: int
    holders: tuple[str, ...]
    check_value: str
    fingerprint: str
    public_key: bytes
    split_at: str
    last_drill: str | None
    bundle_sha256: str


class Custody:
    """The home's break-glass set."""

    def __init__(self, ctx: HomeContext) -> None:
        self._ctx = ctx

    def current(self) -> BreakGlassSet | None:
        raw = self._ctx.catalog.get_meta(META)
        if not raw:
            return None
        d = json.loads(raw)
        return BreakGlassSet(
            int(d["set_id"]),
            int(d["threshold"]),
            int(d["count"]),
            tuple(d["holders"]),
            str(d["check_value"]),
            str(d["fingerprint"]),
            base64.b64decode(d["public_key"]),
            str(d["split_at"]),
            d.get("last_drill"),
            str(d["bundle_sha256"]),
        )

    def _save(self, s: BreakGlassSet) -> None:
        self._ctx.catalog.set_meta(
            META,
            json.dumps(
                {
                    "set_id": s.set_id,
                    "threshold": s.threshold,
                    "count": s.count,
                    "holders": list(s.holders),
                    "check_value": s.check_value,
                    "fingerprint": s.fingerprint,
                    "public_key": base64.b64encode(s.public_key).decode(),
                    "split_at": s.split_at,
                    "last_drill": s.last_drill,
                    "bundle_sha256": s.bundle_sha256,
                },
                sort_keys=True,
            ),
        )

    def _announced(self, s: BreakGlassSet) -> None:
        """The stored set is the one the newest signed split entry announced."""
        entries = [e for e in self._ctx.log.entries() if e.get("action") == "breakglass.split"]
        d = entries[-1].get("details") if entries else None
        if not isinstance(d, dict) or (
            d.get("set_id"),
            d.get("fingerprint"),
            d.get("bundle_sha256"),
        ) != (
            s.set_id,
            s.fingerprint,
            s.bundle_sha256,
        ):
            raise ConflictError(
                "the break-glass set in the catalog is not the one the signed log announced; "
                "nothing was done. Run 'custodian audit reconcile'."
            )

    def split(
        self,
        holders: Sequence[Actor],
        *,
        by: Actor,
        code: str | None,
        threshold: int = 2,
        passphrase: bytes = b"",
    ) -> BG.ShareSet:
        """A new break-glass set, one share per holder named (custodians, present); the
        caller shows each share to its holder and wipes it (``ShareSet.wipe``)."""
        ctx = self._ctx
        action, subject = "breakglass.split", f"home:{ctx.config.home_id}"
        ctx.require(by, "custodian", action, subject)
        names = [h.name for h in holders]
        for h in holders:
            ctx.require(h, "custodian", action, subject)
        if len(set(names)) != len(names):
            raise ctx.refused(
                by,
                action,
                subject,
                "a holder named twice",
                "one share per person: a holder is named twice. Nothing was made.",
            )
        old = self.current()
        avoid = [old.set_id] if old else []
        with BG.RecoverySecret.generate() as secret:
            shares = BG.split(
                secret,
                ctx.config.home_id,
                threshold=threshold,
                count=len(holders),
                passphrase=passphrase,
                avoid_set_ids=avoid,
            )
            public = BG.recovery_public_key(secret, ctx.config.home_id)
        bundle = H.seal_to_recovery(ctx.load_ksk(), public, home_id=ctx.config.home_id, name=BUNDLE)
        digest = H.blob_digest(bundle)
        try:
            with ctx.audited(
                by,
                action,
                subject,
                {
                    "set_id": shares.set_id,
                    "threshold": threshold,
                    "count": len(holders),
                    "holders": names,
                    "fingerprint": shares.fingerprint,
                    "public_key": base64.b64encode(public).decode(),
                    "check_value": shares.check_value,
                    "bundle_sha256": digest,
                    "revokes": old.set_id if old else None,
                },
            ) as d:
                d["step"] = ctx.confirm(by, code, action, subject)
                for h in holders:  # each holder present vouches for the recovery key
                    ctx.record(
                        h, "breakglass.sign", subject, details={"fingerprint": shares.fingerprint}
                    )
                ctx.catalog.put_blob(BUNDLE, "recovery", bundle)
                self._save(
                    BreakGlassSet(
                        shares.set_id, threshold, len(holders), tuple(names), shares.check_value,
                        shares.fingerprint, public, ctx.now(), None, digest,
                    )
                )  # fmt: skip
        except BaseException:
            shares.wipe()
            raise
        return shares

    def drill(self, texts: Sequence[str], *, by: Actor, passphrase: bytes = b"") -> BG.DrillRecord:
        """Check that ``texts`` reconstruct the current set's secret; record the date."""
        ctx = self._ctx
        s = self._need()
        self._announced(s)
        rec = BG.drill(
            texts,
            home_id=ctx.config.home_id,
            set_id=s.set_id,
            check_value=s.check_value,
            passphrase=passphrase,
            fingerprint=s.fingerprint,
            now=ctx.clock(),
        )
        with ctx.audited(
            by,
            "breakglass.drill",
            f"home:{ctx.config.home_id}",
            {"set_id": s.set_id, "ok": rec.ok, "shares": rec.shares_checked,
             "problem": rec.problem or ""},
        ):  # fmt: skip
            if rec.ok:
                self._save(_with_drill(s, rec.at))
        return rec

    def recover(self, texts: Sequence[str], *, passphrase: bytes = b"") -> str:
        """Install the KSK again from shares at threshold (a copy of the home with no
        keyring, or a keyring that lost it). Returns the set id's recovery note."""
        ctx = self._ctx
        s = self._need()
        self._announced(s)
        got = ctx.catalog.blob(BUNDLE)
        if got is None or got[1] != s.bundle_sha256:
            raise CustodianError(
                "the recovery bundle is missing or is not the one the log announced; nothing "
                "was installed."
            )
        with BG.Recovery(
            ctx.config.home_id, s.set_id, s.check_value, passphrase=passphrase,
            fingerprint=s.fingerprint,
        ) as r:  # fmt: skip
            for t in texts:
                r.add(t)
            private, public = BG.recovery_keypair(r.secret, ctx.config.home_id)
        from custodian.backends.local import load_private

        with private:
            if BG.recovery_fingerprint(public) != s.fingerprint:
                raise CustodianError(
                    "the recovered key is not the announced one; nothing was installed."
                )
            ksk = H.open_from_recovery(
                got[0], load_private("mlkem768-x25519", private),
                home_id=ctx.config.home_id, name=BUNDLE,
            )  # fmt: skip
        from custodian.keystore import ksk_check_value

        with ksk:
            if ksk_check_value(ksk) != ctx.catalog.get_meta("ksk_check"):
                raise CustodianError(
                    "the recovered root key does not match this home; nothing was installed."
                )
            ctx.keyring.store_ksk(ksk)
        ctx._ksk = None
        home = ctx.home_actor()
        ctx.record(
            home, "breakglass.recover", f"home:{ctx.config.home_id}", details={"set_id": s.set_id}
        )
        return (
            f"the root key is installed again from set {s.set_id}. Now make a new break-glass "
            "set (the old one was used) and refresh every quorum KEK."
        )

    def _need(self) -> BreakGlassSet:
        s = self.current()
        if s is None:
            raise ConflictError(
                "this home has no break-glass set yet; custodians make one with "
                "'custodian breakglass split'."
            )
        return s


def _with_drill(s: BreakGlassSet, at: str) -> BreakGlassSet:
    from dataclasses import replace

    return replace(s, last_drill=at)
