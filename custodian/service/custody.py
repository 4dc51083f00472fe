"""``svc.custody``: the break-glass set of a home (docs/custody.md section 10).

- :meth:`Custody.split`: custodians present make a 256-bit recovery secret, split
  it T-of-N into SLIP-39 shares (returned to the caller to show one holder at a
  time, never stored), and announce the recovery key and the recovery identity's
  signing key in a ``breakglass.split`` entry, before which each holder signed the
  key's fingerprint and the set id (``breakglass.sign``; the ledger wants >= T).
  The recovery bundle (the KSK) and every holder key of the holders present are
  sealed to the recovery key; their SHA-256 are in the signed entry.
- :meth:`Custody.reshare`: the same secret (the old shares at threshold give it),
  new shares and a new set id; the old set is revoked.
- :meth:`Custody.rekey`: a new secret; everything the log vouches for under the
  old recovery key is opened with the old shares and sealed to the new key.
- :meth:`Custody.drill`: shares reconstruct the set's secret; nothing changes but
  the dated record of the drill.
- :meth:`Custody.recover`: on a copy of the home with no keyring, shares at
  threshold install the KSK again and open every holder key the log vouches for;
  the :class:`Recovered` it returns re-enrols people (new signing and personal
  keys, the holder keys sealed under them), signed by the recovery identity.

The set to check against is always the verified log's (:mod:`.recovery`); the
catalog's copy (``meta.breakglass``) is for display, and a difference is refused.
What is stored: set id, threshold, count, holders, check value, the recovery
public key and its fingerprint, the time; never a share or the secret.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from custodian import people as P
from custodian.custody import breakglass as BG
from custodian.custody import holders as H
from custodian.errors import ConflictError, CustodianError, MismatchError
from custodian.people import Actor, AuthError
from custodian.secret import SecretBytes
from custodian.service import recovery
from custodian.service.context import HOME, HomeContext

if TYPE_CHECKING:
    from custodian.catalog import Person
    from custodian.ledger import BreakGlassInfo

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
    revoked: tuple[int, ...] = ()


@dataclass
class SetStatus:
    """What ``breakglass status`` and the screen show (nothing secret)."""

    current: BreakGlassSet | None
    uncovered: list[str] = field(default_factory=list)  # holder keys not sealed to it
    problem: str = ""  # the catalog's set differs from the log's


class Custody:
    """The home's break-glass set."""

    def __init__(self, ctx: HomeContext) -> None:
        self._ctx = ctx

    # ------------------------------------------------------------ reading

    def current(self) -> BreakGlassSet | None:
        """The set as the catalog records it (for display; decisions use the log's)."""
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
            tuple(int(x) for x in d.get("revoked", ())),
        )

    def status(self) -> SetStatus:
        s = self.current()
        try:
            self._verified()
            return SetStatus(s, recovery.uncovered(self._ctx) if s else [])
        except CustodianError as e:
            return SetStatus(s, [], str(e))

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
                    "revoked": list(s.revoked),
                },
                sort_keys=True,
            ),
        )

    def _verified(
        self, by: Actor | None = None, action: str = "breakglass"
    ) -> BreakGlassInfo | None:
        """The log's current set, after checking the catalog's copy against it."""
        ctx = self._ctx
        bg = recovery.target(ctx)
        s = self.current()
        if bg is None and s is None:
            return None
        diffs = []
        if bg is None or s is None:
            diffs.append("the catalog and the log disagree on whether a set exists")
        else:
            for what, a, b in (
                ("set id", s.set_id, bg.set_id),
                ("check value", s.check_value, bg.check_value),
                ("recovery-key fingerprint", s.fingerprint, bg.fingerprint),
                ("recovery public key", s.public_key, bg.public_key),
                ("threshold", s.threshold, bg.threshold),
                ("holders", s.holders, bg.holders),
            ):
                if a != b:
                    diffs.append(f"the {what}")
        if diffs:
            raise ctx.refused(
                by,
                action,
                f"home:{ctx.config.home_id}",
                "the catalog's break-glass set differs from the signed log",
                f"the break-glass set in the catalog is not the one the signed log announced "
                f"({', '.join(diffs)} differ); nothing was done or installed. Run 'custodian "
                "audit reconcile' and restore the catalog from a copy.",
                MismatchError,
                {"differences": diffs},
            )
        return bg

    def _need(self, by: Actor | None, action: str) -> BreakGlassInfo:
        bg = self._verified(by, action)
        if bg is None:
            raise ConflictError(
                "this home has no break-glass set yet; custodians make one with "
                "'custodian breakglass split'."
            )
        return bg

    # ------------------------------------------------------------ making a set

    def split(
        self,
        holders: Sequence[Actor],
        *,
        by: Actor,
        code: str | None,
        threshold: int = 2,
        passphrase: bytes = b"",
    ) -> BG.ShareSet:
        """A new break-glass set (a new secret), one share per holder named (custodians,
        present); the caller shows each share to its holder and wipes it
        (``ShareSet.wipe``). A set already there is revoked; holder keys sealed only to
        it are sealed again by the holders present (others: ``status`` names them)."""
        self._check_people(holders, by, "breakglass.split")
        bg = self._verified(by, "breakglass.split")
        with BG.RecoverySecret.generate() as secret:
            return self._new_set(
                "breakglass.split", secret, holders, by, code, threshold, passphrase, bg
            )

    def reshare(
        self,
        texts: Sequence[str],
        holders: Sequence[Actor],
        *,
        by: Actor,
        code: str | None,
        threshold: int = 2,
        passphrase: bytes = b"",
        new_passphrase: bytes | None = None,
    ) -> BG.ShareSet:
        """New shares of the same secret (the old set's shares at threshold give it) for
        ``holders``; the recovery key and every blob sealed to it stay; the old set is
        revoked, so its papers open nothing from now on."""
        action = "breakglass.reshare"
        self._check_people(holders, by, action)
        bg = self._need(by, action)
        with self._secret(texts, passphrase, bg, by, action) as secret:
            return self._new_set(
                action, secret, holders, by, code, threshold,
                passphrase if new_passphrase is None else new_passphrase, bg,
            )  # fmt: skip

    def rekey(
        self,
        texts: Sequence[str],
        holders: Sequence[Actor],
        *,
        by: Actor,
        code: str | None,
        threshold: int = 2,
        passphrase: bytes = b"",
        new_passphrase: bytes | None = None,
    ) -> BG.ShareSet:
        """A new secret: everything the log vouches for under the old recovery key (the
        bundle, every holder key) is opened with the old set's shares and sealed to the
        new key, under a quorum of the new set's holders; the old set is revoked."""
        action = "breakglass.rekey"
        self._check_people(holders, by, action)
        bg = self._need(by, action)
        ctx = self._ctx
        old = self._vouched_blobs(bg, by, action)
        with self._secret(texts, passphrase, bg, by, action) as old_secret:
            private, _ = BG.recovery_keypair(old_secret, ctx.config.home_id)
        from custodian.backends.local import load_private

        with private:
            old_key = load_private(H.RECOVERY_SUITE, private)

        def carried(public: bytes) -> dict[str, bytes]:
            return {
                name: recovery.reseal(blob, name, old_key, public, ctx.config.home_id)
                for name, blob in old.items()
            }

        with BG.RecoverySecret.generate() as secret:
            return self._new_set(
                action, secret, holders, by, code, threshold,
                passphrase if new_passphrase is None else new_passphrase, bg, carried,
            )  # fmt: skip

    def _check_people(self, holders: Sequence[Actor], by: Actor, action: str) -> None:
        ctx = self._ctx
        subject = f"home:{ctx.config.home_id}"
        ctx.require(by, "custodian", action, subject)
        for h in holders:
            ctx.require(h, "custodian", action, subject)
        names = [h.name for h in holders]
        if len(set(names)) != len(names):
            raise ctx.refused(
                by, action, subject, "a holder named twice",
                "one share per person: a holder is named twice. Nothing was made.",
            )  # fmt: skip

    def _new_set(
        self,
        action: str,
        secret: BG.RecoverySecret,
        holders: Sequence[Actor],
        by: Actor,
        code: str | None,
        threshold: int,
        passphrase: bytes,
        bg: BreakGlassInfo | None,
        carried: Callable[[bytes], dict[str, bytes]] | None = None,
    ) -> BG.ShareSet:
        ctx = self._ctx
        home_id, subject = ctx.config.home_id, f"home:{ctx.config.home_id}"
        names = [h.name for h in holders]
        st = ctx.log_state()
        avoid = set(st.breakglass_revoked) | ({bg.set_id} if bg else set())
        shares = BG.split(
            secret,
            home_id,
            threshold=threshold,
            count=len(holders),
            passphrase=passphrase,
            avoid_set_ids=avoid,
        )
        try:
            public = BG.recovery_public_key(secret, home_id)
            spub = BG.recovery_signing_key(secret, home_id).public_key().public_bytes_raw()
            blobs: dict[str, bytes] = {}
            if action != "breakglass.reshare":
                blobs = carried(public) if carried is not None else {}
                blobs[BUNDLE] = H.seal_to_recovery(
                    ctx.load_ksk(), public, home_id=home_id, name=BUNDLE
                )
                for a in {h.name: h for h in [*holders, by]}.values():
                    blobs.update(recovery.holder_keys_of(ctx, a, public))
            digests = {n: H.blob_digest(b) for n, b in sorted(blobs.items())}
            revoked = (*st.breakglass_revoked, bg.set_id) if bg else ()
            bundle = digests.get(BUNDLE) or (bg.blobs.get(BUNDLE, "") if bg else "")
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
                    "signing_key_id": P.key_id(spub),
                    "signing_public_key": base64.b64encode(spub).decode(),
                    "blobs": digests,
                    "bundle_sha256": bundle,
                    "revokes": bg.set_id if bg else None,
                },
            ) as d:
                d["step"] = ctx.confirm(by, code, action, subject)
                for h in holders:  # each holder present vouches for the key and the set
                    ctx.record(
                        h,
                        "breakglass.sign",
                        subject,
                        details={"fingerprint": shares.fingerprint, "set_id": shares.set_id},
                    )
                for name, blob in blobs.items():
                    ctx.catalog.put_blob(name, recovery.KIND, blob)
                self._save(
                    BreakGlassSet(
                        shares.set_id, threshold, len(holders), tuple(names),
                        shares.check_value, shares.fingerprint, public, ctx.now(), None,
                        bundle, tuple(revoked),
                    )
                )  # fmt: skip
        except BaseException:
            shares.wipe()
            raise
        return shares

    # ------------------------------------------------------------ using the shares

    def _secret(
        self,
        texts: Sequence[str],
        passphrase: bytes,
        bg: BreakGlassInfo,
        by: Actor | None,
        action: str,
    ) -> BG.RecoverySecret:
        """The set's secret from ``texts`` at threshold, checked against the log's check
        value and recovery key; a refusal is logged when a key on this machine can sign."""
        ctx = self._ctx
        revoked = ctx.log_state().breakglass_revoked
        try:
            with BG.Recovery(
                ctx.config.home_id, bg.set_id, bg.check_value, revoked=revoked,
                passphrase=passphrase, fingerprint=bg.fingerprint,
            ) as r:  # fmt: skip
                for t in texts:
                    r.add(t)
                return BG.RecoverySecret(r.secret.reveal())
        except BG.BreakGlassError as e:
            ctx.record_refusal(by, action, f"home:{ctx.config.home_id}", e.message)
            raise

    def drill(self, texts: Sequence[str], *, by: Actor, passphrase: bytes = b"") -> BG.DrillRecord:
        """Check that ``texts`` reconstruct the current set's secret; record the date."""
        ctx = self._ctx
        action = "breakglass.drill"
        ctx.require(by, None, action, f"home:{ctx.config.home_id}")
        bg = self._need(by, action)
        rec = BG.drill(
            texts,
            home_id=ctx.config.home_id,
            set_id=bg.set_id,
            check_value=bg.check_value,
            revoked=ctx.log_state().breakglass_revoked,
            passphrase=passphrase,
            fingerprint=bg.fingerprint,
            now=ctx.clock(),
        )
        s = self.current()
        with ctx.audited(
            by,
            action,
            f"home:{ctx.config.home_id}",
            {"set_id": bg.set_id, "ok": rec.ok, "shares": rec.shares_checked,
             "problem": rec.problem or ""},
        ):  # fmt: skip
            if rec.ok and s is not None:
                self._save(replace(s, last_drill=rec.at))
        return rec

    def entry(self, passphrase: bytes = b"") -> BG.Recovery:
        """A share checker for the current set as the log announced it (a screen feeds it
        one typed share at a time: words, checksum, set, revoked, twice; at threshold, the
        check value). The caller wipes it; :meth:`drill` and :meth:`recover` take the
        texts it accepted."""
        bg = self._need(None, "breakglass.entry")
        return BG.Recovery(
            self._ctx.config.home_id, bg.set_id, bg.check_value,
            revoked=self._ctx.log_state().breakglass_revoked, passphrase=passphrase,
            fingerprint=bg.fingerprint,
        )  # fmt: skip

    @staticmethod
    def complete(prefix: str) -> list[str]:
        """SLIP-39 words that start with ``prefix``."""
        return BG.complete(prefix)

    def last_good_drill(self) -> str | None:
        s = self.current()
        return s.last_drill if s is not None else None

    def _vouched_blobs(self, bg: BreakGlassInfo, by: Actor | None, action: str) -> dict[str, bytes]:
        """Every blob the log vouches for, from the catalog; one missing or edited is
        refused (nothing was done)."""
        ctx = self._ctx
        out: dict[str, bytes] = {}
        for name, digest in sorted(bg.blobs.items()):
            got = ctx.catalog.blob(name)
            if got is None or H.blob_digest(got[0]) != digest:
                what = "missing from" if got is None else "not the one the log vouched for in"
                raise ctx.refused(
                    by, action, f"home:{ctx.config.home_id}", f"blob {name} {what} the catalog",
                    f"the recovery blob {name} is {what} the catalog; nothing was done or "
                    "installed. Restore the catalog from a copy, then try again.",
                    MismatchError,
                )  # fmt: skip
            out[name] = got[0]
        return out

    def recover(self, texts: Sequence[str], *, passphrase: bytes = b"") -> Recovered:
        """Install the KSK again from shares at threshold (a copy of the home with no
        keyring, or a keyring that lost it) and open every holder key the log vouches
        for. The result re-enrols people (:meth:`Recovered.reenrol`); close it when done.

        Before the secret is reconstructed, no key on a keyringless machine can sign, so
        a refused share there is shown but cannot be logged (on a home whose keyring
        still holds the KSK, the home key logs it)."""
        ctx = self._ctx
        action = "breakglass.recover"
        bg = self._need(None, action)
        blobs = self._vouched_blobs(bg, None, action)
        if BUNDLE not in blobs:
            raise MismatchError("the log vouches for no recovery bundle; nothing was installed.")
        home_id = ctx.config.home_id
        with self._secret(texts, passphrase, bg, None, action) as secret:
            private, _ = BG.recovery_keypair(secret, home_id)
            signer = BG.recovery_signing_key(secret, home_id)
        from custodian.backends.local import load_private
        from custodian.keystore import ksk_check_value

        spub = signer.public_key().public_bytes_raw()
        if P.key_id(spub) != bg.signing_key_id:
            private.wipe()
            raise MismatchError(
                "the recovered secret does not give the recovery identity the log announced; "
                "nothing was installed. Report it: the log or the shares were tampered with."
            )
        with private:
            key = load_private(H.RECOVERY_SUITE, private)
        held: dict[str, list[tuple[H.HolderKey, SecretBytes]]] = {}
        skipped: list[str] = []
        with H.open_from_recovery(blobs.pop(BUNDLE), key, home_id=home_id, name=BUNDLE) as ksk:
            if ksk_check_value(ksk) != ctx.catalog.get_meta("ksk_check"):
                raise MismatchError(
                    "the recovered root key does not match this home's check value in the "
                    "catalog; nothing was installed. Restore the catalog from a copy."
                )
            manifests = {(m.kek, m.version): m for m in recovery.quorum_manifests(ctx)}
            for name, blob in blobs.items():
                _, kek, v, person = name.split("/")
                m = manifests.get((kek, int(v.lstrip("v"))))
                if m is None or person not in {h.name for h in m.holders}:
                    skipped.append(f"{name} (no such holder in a live manifest)")
                    continue
                hk = H.HolderKey(m.kek, m.version, person, m.suite, m.holder(person).public_key)
                raw = H.open_from_recovery(blob, key, home_id=home_id, name=name)
                if H.public_of(m.suite, raw) != hk.public_key:
                    raw.wipe()
                    skipped.append(f"{name} (not the manifest's key)")
                    continue
                held.setdefault(person, []).append((hk, raw))
            actor = Actor(BG.RECOVERY_ACTOR, (), bg.signing_key_id, signer)
            ctx.record(
                actor,
                action,
                f"home:{home_id}",
                details={
                    "set_id": bg.set_id,
                    "fingerprint": bg.fingerprint,
                    "holder_keys": sorted(n for n in bg.blobs if n != BUNDLE),
                    "skipped": skipped,
                },
            )
            ctx.keyring.store_ksk(ksk)
        ctx._ksk = None
        return Recovered(ctx, actor, bg.set_id, held, skipped)


class Recovered:
    """A recovery in progress: the KSK is installed; the holder keys are open in memory
    until :meth:`close`. :meth:`reenrol` gives a person a new signing key and personal
    key (their passphrases were lost with the keyring) and seals their holder keys under
    it; the recovery identity signs the replacement (``person.key.replace``)."""

    def __init__(
        self,
        ctx: HomeContext,
        actor: Actor,
        set_id: int,
        held: dict[str, list[tuple[H.HolderKey, SecretBytes]]],
        skipped: list[str],
    ) -> None:
        self._ctx = ctx
        self._actor = actor
        self.set_id = set_id
        self._held = held
        self.skipped = skipped
        self.reenrolled: list[str] = []

    @property
    def holders(self) -> list[str]:
        """People whose holder keys this recovery opened."""
        return sorted(self._held)

    @property
    def note(self) -> str:
        return (
            f"the root key is installed again from set {self.set_id}. Re-enrol every "
            "custodian and operator (new passphrases), then make a new break-glass set "
            "(the old one was used) and refresh every quorum KEK."
        )

    def reenrol(self, name: str, passphrase: SecretBytes | None) -> Person:
        """A new signing key (under a new personal key from ``passphrase``) for ``name``,
        and their holder keys sealed under that personal key, in one signed entry."""
        from custodian.custody import personal
        from custodian.service import items

        ctx = self._ctx
        subject, action = f"person:{name}", "person.key.replace"
        if self._actor._key is None:
            raise CustodianError("this recovery is closed; run it again with the shares.")
        p = ctx.catalog.person(name)
        if p.kind == HOME or not p.active:
            raise ctx.refused(
                self._actor, action, subject, "not an active person",
                f"{name} is not an active person of this home; nothing was done.", AuthError,
            )  # fmt: skip
        if p.kind == "person":
            if passphrase is None:
                raise CustodianError(f"{name} is a person: their new key needs a passphrase.")
            try:
                personal.check_passphrase(passphrase, person=name)
            except personal.PersonalKeyError as e:
                raise CustodianError(f"{e} Nothing was saved.") from None
        else:
            passphrase = None
        key, pk = P.new_signing_key(
            name, passphrase, home_id=ctx.config.home_id, kdf=P.kdf_params(ctx.config.demo)
        )
        mine = self._held.get(name, [])
        try:
            if key.personal_blob is not None:
                ctx.keyring.set(f"personal:{name}:{key.key_id}", key.personal_blob)
            ctx.keyring.set(f"sign:{name}:{key.key_id}", key.blob)
            prot = "passphrase" if key.blob_protected else "none"
            with ctx.audited(
                self._actor,
                action,
                subject,
                {
                    "key_id": key.key_id,
                    "public_key": base64.b64encode(key.public_raw).decode(),
                    "previous_key_id": p.key.key_id if p.key else None,
                    "protection": prot,
                    "breakglass_set": self.set_id,
                    "holder_keys": [f"{hk.kek}/v{hk.version}" for hk, _ in mine],
                },
            ):
                ctx.catalog.add_signing_key(name, key.key_id, key.public_raw, prot)
                for hk, raw in mine:
                    if pk is None:
                        raise CustodianError(f"{name} is a service identity and holds no share.")
                    item = personal.seal_item(
                        pk, raw, home_id=ctx.config.home_id, person=name,
                        name=H.item_name(hk.kek, hk.version),
                    )  # fmt: skip
                    items.put(ctx, items.holder_entry(name, hk.kek, hk.version), item)
        finally:
            if pk is not None:
                pk.wipe()
        self.reenrolled.append(name)
        return ctx.catalog.person(name)

    def close(self) -> None:
        for keys in self._held.values():
            for _, raw in keys:
                raw.wipe()
        self._held.clear()
        self._actor.forget()

    def __enter__(self) -> Recovered:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
