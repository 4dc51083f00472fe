"""``svc.restores``: restore requests and the sessions that run them.

An operator (or custodian) asks with :meth:`Restores.request`; custodians
decide through ``svc.approvals``; at quorum a session opens
(:meth:`Restores.open_session`, the approval mechanism's hook); the requester
runs it with :meth:`Restores.run`. Data keys are unwrapped only inside an open
session that covers the backup, checked against the catalog whoever calls.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from custodian import approvals as A
from custodian.backends.base import DekRef
from custodian.catalog import Backup
from custodian.errors import (
    BackendError,
    ConflictError,
    ContainerError,
    CustodianError,
    NotFoundError,
    UnwrapError,
)
from custodian.people import Actor, AuthError
from custodian.secret import SecretBytes
from custodian.service.context import HomeContext, Progress

if TYPE_CHECKING:
    from custodian import container
    from custodian.safefile import HiddenFile
    from custodian.service.approvals import Approvals


class Restores:
    """Restore requests, sessions and runs."""

    def __init__(self, ctx: HomeContext, approvals: Approvals) -> None:
        self._ctx = ctx
        self._approvals = approvals
        approvals.register(
            "restore",
            at_quorum=self.open_session,
            on_approve=lambda r, by, d, last: _shares().on_approve(ctx, r, by, d, last),
        )
        approvals.on_housekeeping(self._forget_ended)

    def request(
        self,
        backups: Sequence[str],
        reason: str,
        target: str | os.PathLike[str],
        *,
        by: Actor,
    ) -> A.Request:
        """Ask for a restore of ``backups`` (ids or unambiguous prefixes) into ``target``.

        Operators and custodians may ask; auditors may not. ``target`` must be an
        existing directory outside the home; it need not be empty, but a file
        already there under a backup's restore name is never replaced (that backup
        fails when the session runs). Each backup must be in the catalog. The file
        name of each backup (its label made safe, else its id) is fixed here, so
        custodians approve exactly what will be written.
        """
        ctx = self._ctx
        action = "restore.request"
        ctx.require(by, None, action, "request:new")
        p = ctx.catalog.person(by.name)
        if not (p.has("operator") or p.has("custodian")):
            raise ctx.refused(
                by,
                action,
                "request:new",
                f"{by.name} holds neither the operator nor the custodian role",
                f"{by.name} may not request a restore (operators and custodians may); "
                "nothing was done.",
                AuthError,
            )
        reason = " ".join(reason.split())
        given = [str(x).strip() for x in backups if str(x).strip()]
        details: dict[str, Any] = {"kind": "restore", "reason": reason, "target": str(target)}
        if not reason:
            raise ctx.refused(
                by,
                action,
                "request:new",
                "no reason given",
                "a restore request needs a reason (--reason TEXT): custodians decide on it. "
                "Nothing was done.",
                details=details,
            )
        if len(reason) > 2000:
            raise ctx.refused(
                by,
                action,
                "request:new",
                "reason too long",
                "the reason is longer than 2,000 characters; shorten it. Nothing was done.",
            )
        if not given:
            raise ctx.refused(
                by,
                action,
                "request:new",
                "no backup named",
                "name at least one backup to restore; nothing was done.",
                details=details,
            )
        t = Path(target).expanduser()
        if not t.is_dir():
            raise ctx.refused(
                by,
                action,
                "request:new",
                "target is not an existing directory",
                f"the target {t} is not an existing directory; create it (mode 0700) first. "
                "Nothing was done.",
                NotFoundError,
                details,
            )
        t = t.resolve()
        home = ctx.home.path.resolve()
        if t == home or home in t.parents:
            raise ctx.refused(
                by,
                action,
                "request:new",
                "target inside the home",
                f"the target {t} is inside the custodian home; plaintext never goes there. "
                "Choose another directory. Nothing was done.",
                details=details,
            )
        details["target"] = str(t)
        found: list[Backup] = []
        for x in given:
            try:
                b = ctx.catalog.find_backup(x)
            except NotFoundError as e:
                raise ctx.refused(
                    by,
                    action,
                    "request:new",
                    f"backup {x[:64]} is not in the catalog",
                    f"{e} Nothing was requested.",
                    NotFoundError,
                    details,
                ) from None
            if all(b.id != f.id for f in found):
                found.append(b)
        files = restore_names(found)
        problem = target_problem(t, files.values())
        if problem:  # the run would refuse it: say so now, before anyone approves
            raise ctx.refused(
                by,
                action,
                "request:new",
                problem,
                f"{problem}; nothing was requested.",
                ConflictError,
                details,
            )
        payload = {
            "backups": [b.id for b in found],
            "files": files,
            "reason": reason,
            "target": str(t),
        }
        shares = _shares()
        sk = shares.prepare(ctx, found, by, action)
        if sk is None:
            return self._approvals.open_request("restore", payload, by=by, action=action)
        ids = [b.id for b in found]
        return self._approvals.open_request(
            "restore",
            payload,
            by=by,
            action=action,
            prepare=lambda rid, exp, q: shares.payload(ctx, rid, exp, q, by, ids, str(t), sk),
        )

    def target_problems(self, r: A.Request) -> str:
        """What at ``r``'s target would stop its run now ('' when nothing): the directory
        gone or not writable, or a file already under the name of a backup still to
        restore. The requester can fix each; :meth:`run` refuses it first, so the
        session stays open."""
        done_ok = {x.backup for x in r.results if x.outcome == "ok"}
        files = r.payload.get("files", {})
        names = [str(files.get(b, b)) for b in r.backups if b not in done_ok]
        return target_problem(Path(r.target), names)

    def _forget_ended(self) -> None:
        """Releases, locks and session keys of custody requests that ended go."""
        ctx = self._ctx
        for rid in {
            str(r[0]) for r in ctx.catalog.db.execute("SELECT DISTINCT request FROM custody_blobs")
        }:
            r = A.find_request(ctx.catalog.db, ctx.policy.approval_quorum, rid)
            if r.final:
                with ctx.catalog.transaction():
                    _shares().forget(ctx, r)

    def open_session(self, r: A.Request, by: Actor, details: dict[str, Any]) -> None:
        """At quorum, inside the approving transaction: the session opens."""
        ctx = self._ctx
        sid = A.new_id()
        exp = A.stamp(ctx.clock() + 60 * ctx.policy.session_minutes)
        A.add_session(ctx.catalog.db, A.Session(sid, r.id, ctx.now(), exp, "open", None))
        details.update(session=sid, session_expires_at=exp)

    def run(
        self,
        request_or_session_id: str,
        *,
        by: Actor,
        progress: Progress | None = None,
        cancelled: Callable[[], bool] | None = None,
        on_result: Callable[[A.RestoreResult], None] | None = None,
    ) -> A.RestoreReport:
        """Restore every backup of an approved request into its target, in its open session.

        Only the requester runs it. Each backup is decrypted to a file that has
        no name until its last chunk authenticated and its container digest
        matched the catalog (:mod:`custodian.safefile`), and that keeps a private
        second name until its result is recorded; a backup that fails leaves
        nothing at the target and the others carry on. What a killed run left in
        the target (a file published but not recorded, or a private file without
        O_TMPFILE) is swept first. Each outcome is recorded
        (catalog and audit log). ``progress(done, total)`` counts plaintext bytes
        over the whole run; ``cancelled()`` is checked between backups (a cancelled
        run keeps the session open, and running again does the rest); ``on_result``
        gets each backup's result as it is recorded. When every backup has been
        tried the session closes and the request is done.
        """
        ctx = self._ctx
        action = "restore.run"
        ctx.require(by, None, action, f"request:{request_or_session_id[:64]}")
        self._approvals.expire_due()
        r = self._approvals.find(request_or_session_id, by, action)
        ctx.check_request(r, by, action)  # approved, with its session, as the log says
        subject = f"request:{r.id}"
        if r.kind != "restore":
            raise ctx.refused(
                by, action, subject, "not a restore", f"request {r.id[:8]} is not a restore."
            )
        if by.name != r.requester:
            raise ctx.refused(
                by,
                action,
                subject,
                f"{by.name} is not the requester",
                f"only {r.requester}, who asked for this restore, may run it; nothing was done.",
                AuthError,
            )
        s = r.session
        if s is None or s.state != "open":
            if r.state == "open":
                why = f"not approved yet ({len(r.approvals)} of {r.quorum} approvals)"
            elif s is not None and s.state == "expired":
                why = "its session expired"
            elif r.state == "done":
                why = "its session already ran and closed"
            else:
                why = f"the request is {r.state}"
            raise ctx.refused(
                by,
                action,
                subject,
                f"no open session: {why}",
                f"request {r.id[:8]} has no open session ({why}); nothing was decrypted. "
                "Ask for a new restore if it is still needed.",
                AuthError,
            )
        target = Path(r.target)
        if not target.is_dir():
            raise ctx.refused(
                by,
                action,
                subject,
                "target directory missing",
                f"the target {target} no longer exists; nothing was decrypted. Create it "
                "again and run the session before it expires.",
                NotFoundError,
            )
        self._sweep(target)
        problem = self.target_problems(r)
        if problem:  # fixable by the requester: the session stays open for the next run
            raise ctx.refused(
                by,
                action,
                subject,
                problem,
                f"{problem}; nothing was decrypted and the session stays open until "
                f"{s.expires_at[11:16]} UTC: fix it and run the session again.",
                ConflictError,
            )
        done_ok = {x.backup for x in r.results if x.outcome == "ok"}
        todo = [b for b in r.backups if b not in done_ok]
        missing = self._credentials_missing(todo)
        if missing:  # a server backend without its custody credential: keep the session
            raise ctx.refused(
                by, action, subject, "no custody credential",
                f"{missing}; nothing was decrypted and the session stays open until "
                f"{s.expires_at[11:16]} UTC.",
                BackendError,
            )  # fmt: skip
        report = A.RestoreReport(
            r.id, s.id, str(target), skipped=[b for b in r.backups if b in done_ok]
        )
        sizes = {bid: self._expected_size(bid) for bid in todo}
        total = sum(sizes.values())
        base = 0
        for bid in todo:
            if cancelled is not None and cancelled():
                report.cancelled = True
                break

            def step(done: int, _total: int, base: int = base) -> None:
                if progress is not None:
                    progress(min(base + done, total), total)

            res, fixable = self._restore_one(s, r, bid, target, by, step)
            if fixable and not report.kept_open:
                report.kept_open = (
                    f"{res.reason} Fix it and run the session again before "
                    f"{s.expires_at[11:16]} UTC"
                )
            report.results.append(res)
            if on_result is not None:
                on_result(res)
            base += sizes[bid]
            if progress is not None:
                progress(base, total)
        if not report.cancelled and not report.kept_open:
            report.session_state = self._close_session(s, r, report, by)
        return report

    def _expected_size(self, backup_id: str) -> int:
        try:
            b = self._ctx.catalog.backup(backup_id)
        except NotFoundError:
            return 0
        return b.size if b.size >= 0 else b.container_size

    def _restore_one(
        self,
        s: A.Session,
        r: A.Request,
        bid: str,
        target: Path,
        by: Actor,
        progress: Progress,
    ) -> tuple[A.RestoreResult, bool]:
        """One backup restored and recorded; with whether its failure is one the
        requester can fix at the target (a file in the way, no room, no permission)."""
        ctx = self._ctx
        dst = target / str(r.payload.get("files", {}).get(bid, bid))
        size: int | None = None
        reason = ""
        fixable = False
        held: list[HiddenFile] = []  # the restored file, published but not yet recorded
        try:
            b = ctx.catalog.backup(bid)
            if dst.exists() or dst.is_symlink():
                raise ConflictError(
                    f"{dst} already exists; it was left as it is and this backup was not "
                    "restored. Move that file away and run the session again."
                )
            w = self._decrypt_backup(b, dst, session=s, progress=progress, hold=held, by=by)
            size = w.plaintext_size
        except (CustodianError, OSError) as e:
            for hf in held:
                hf.discard()
            held.clear()
            reason = str(e) if isinstance(e, CustodianError) else f"{e.strerror or e} ({dst})"
            fixable = (
                isinstance(e, OSError)
                or (isinstance(e, ConflictError) and "already exists" in reason)
                # a server backend down, throttling, or no or an expired decrypt credential
                # (aws-kms): the wrapped DEK is fine, so the session stays open for a retry
                or (isinstance(e, BackendError) and not isinstance(e, UnwrapError))
            )
        ok = not reason
        res = A.RestoreResult(
            s.id, bid, "ok" if ok else "failed", reason, size, str(dst) if ok else None, ctx.now()
        )
        details: dict[str, Any] = {"request": r.id, "session": s.id, "file": str(dst)}
        if ok:
            details["plaintext_size"] = size
        else:
            details["reason"] = reason
        try:
            with ctx.catalog.transaction():
                A.add_result(ctx.catalog.db, res)
                ctx.record(by, "restore.backup", f"backup:{bid}", res.outcome, details)
        except BaseException:
            for hf in held:
                hf.discard()  # not recorded, so not restored (fail-closed)
            raise
        for hf in held:
            hf.done()  # recorded: the private second name goes
        return res, fixable

    def _sweep(self, target: Path) -> None:
        """Remove what a killed run left in ``target``.

        A dead writer's private file that shares its inode with a public name was
        published and perhaps recorded: if a restore result records that path as
        restored, only the private name goes; otherwise both do (not recorded, so
        not restored) and this run restores the backup again. A private file with
        no public name is an unfinished plaintext (file systems without O_TMPFILE)
        or a finished one never published: it goes.
        """
        from custodian import safefile

        db = self._ctx.catalog.db
        for lo in safefile.leftovers(target):
            try:
                recorded = lo.linked is not None and (
                    db.execute(
                        "SELECT 1 FROM restore_results WHERE outcome='ok' AND path=? LIMIT 1",
                        (str(lo.linked),),
                    ).fetchone()
                    is not None
                )
                lo.remove(linked=not recorded)
            finally:
                lo.close()

    def _close_session(self, s: A.Session, r: A.Request, report: A.RestoreReport, by: Actor) -> str:
        ctx = self._ctx
        db = ctx.catalog.db
        with ctx.catalog.transaction():
            cur = A.session(db, s.id)
            if cur is None or cur.state != "open":
                return cur.state if cur is not None else "closed"
            now = ctx.now()
            expired = cur.expires_at <= now
            if not expired:
                A.set_session_state(db, s.id, "closed", now)
                A.set_request_state(db, r.id, "done", now)
                ctx.record(
                    by,
                    "restore.session.close",
                    f"session:{s.id}",
                    details={
                        "request": r.id,
                        "restored": [x.backup for x in report.ok],
                        "failed": [x.backup for x in report.failed],
                        "earlier": report.skipped,
                    },
                )
        if expired:
            self._approvals.expire_due()  # ran out during the run: recorded as expired, not done
            return "expired"
        if r.payload.get("custody") == "quorum":
            with ctx.catalog.transaction():
                _shares().forget(ctx, r)  # the session key and its releases go with the session
        return "closed"

    # ------------------------------------------------------------ decryption (core only)

    def _check_session(self, session: A.Session, b: Backup, target: Path | None) -> None:
        """Refuse (and log) unless the catalog says ``session`` is open, unexpired, and
        covers backup ``b`` (and, when given, a file ``target`` in its directory).

        Everything is read again from the catalog: the object passed in only names
        the session, so a made-up or stale one unwraps nothing.
        """
        ctx = self._ctx
        row = A.session(ctx.catalog.db, session.id)
        why = ""
        if row is None:
            why = "no such restore session"
        elif row.state != "open":
            why = f"the restore session is {row.state}"
        elif row.expires_at <= ctx.now():
            why = "the restore session has expired"
        else:
            req = A.find_request(ctx.catalog.db, ctx.policy.approval_quorum, row.request)
            if b.id not in req.backups:
                why = "the backup is outside the restore session's scope"
            elif target is not None and Path(target).absolute().parent.resolve() != Path(
                req.target
            ):
                why = "the target is outside the restore session's scope"
            else:
                why = ctx.session_differs(row)  # opened by a quorum, as the log says
        if why:
            ctx.record_refusal(
                None, "restore.unwrap", f"backup:{b.id}", why, {"session": session.id}
            )
            raise AuthError(
                f"{why}: no data key was unwrapped and nothing was written. A restore needs "
                "a session that custodians approved for this backup and target."
            )

    def _credentials_missing(self, backup_ids: list[str]) -> str:
        """Why a server backend of these backups cannot unwrap now ('' if all can): its
        custody credential is given per run (custodian.service.backends)."""
        ctx = self._ctx
        names: set[str] = set()
        for b in backup_ids:
            try:
                names.add(ctx.catalog.kek(ctx.catalog.backup(b).kek).backend)
            except NotFoundError:  # gone from the catalog: the run records it as failed
                continue
        for name in sorted(names - {"local", "quorum"}):
            has = getattr(ctx.backend(name), "has_credential", None)
            if has is not None and not has("custody"):
                return (
                    f"backend {name} needs its custody credential for this restore (give it "
                    "with --backend-credential-fd N, or in the run dialog)"
                )
        return ""

    def _unwrap(self, b: Backup, *, session: A.Session, by: Actor | None = None) -> SecretBytes:
        """The DEK of ``b``, only inside an open restore session that covers it (of a
        quorum backup: from the shares released to that session, which only the
        requester's session key opens)."""
        self._check_session(session, b, None)
        backend = self._ctx.catalog.kek_version(b.kek, b.kek_version).backend
        if backend == "quorum":
            if by is None:
                raise AuthError(
                    f"backup {b.id} is under a quorum KEK: its DEK opens only for the person "
                    "who asked, with their session key; nothing was unwrapped."
                )
            r = A.find_request(
                self._ctx.catalog.db, self._ctx.policy.approval_quorum, session.request
            )
            from custodian.service import shares

            return shares.dek(self._ctx, r, b, by)
        res = self._ctx.backend(backend).unwrap(
            [DekRef(b.id, b.kek, b.kek_version, b.wrapped_dek)]
        )[0]
        if isinstance(res, UnwrapError):
            raise res
        return res

    def _decrypt_backup(
        self,
        b: Backup,
        target: Path,
        *,
        session: A.Session,
        progress: Progress | None = None,
        hold: list[HiddenFile] | None = None,
        by: Actor | None = None,
    ) -> container.Written:
        """Decrypt one catalogued backup to ``target``, inside an open restore session.

        The session must be open, unexpired and cover ``b`` and ``target``'s
        directory (checked against the catalog, whoever calls). Plaintext goes to
        a file with no name (O_TMPFILE) that is linked into place only after the
        last chunk authenticated and the container digest matched the catalog;
        an existing ``target`` is never replaced. With ``hold`` the published
        file keeps its private second name (appended to ``hold``) until the
        caller records it (``done()``) or takes it back (``discard()``).
        Restores go through :meth:`run`.
        """
        from custodian import container, safefile

        self._check_session(session, b, Path(target))
        src_path = Path(b.location)
        if not src_path.is_file():
            raise NotFoundError(f"the container of backup {b.id} is missing at {src_path}.")
        out: list[container.Written] = []
        with open(src_path, "rb", buffering=0) as f:
            header = container.read_header(f, str(src_path))
            if str(header.backup_id) != b.id:
                raise ContainerError(
                    f"{src_path} holds backup {header.backup_id}, not {b.id}: the header "
                    "belongs to another backup. No plaintext was written."
                )
            with self._unwrap(b, session=session, by=by) as dek:

                def fill(dst: BinaryIO) -> None:
                    def step(done: int) -> None:
                        if progress is not None:
                            progress(done, max(b.size, done))

                    w = container.decrypt_stream(
                        f,
                        dst,
                        dek,
                        header,
                        name=str(src_path),
                        progress=step,
                        digest=container.digest_kind(b.container_sha256),
                    )
                    if w.sha256 != b.container_sha256:
                        raise ContainerError(
                            f"{src_path} authenticated but its digest differs from the "
                            "catalog's: it is not the container that was catalogued. No "
                            "plaintext was kept."
                        )
                    out.append(w)

                if hold is None:
                    safefile.write_new_file(Path(target), False, fill)
                else:
                    hf = safefile.open_new_file(Path(target), False)
                    try:
                        fill(hf.file)
                        hf.keep()
                        hf.publish(False)
                    except BaseException:
                        hf.discard()
                        raise
                    hold.append(hf)
        return out[0]


def _shares() -> Any:
    """custodian.service.shares, imported when a quorum backup is at stake (listing
    commands never load the custody code)."""
    from custodian.service import shares

    return shares


def target_problem(target: Path, names: Iterable[str]) -> str:
    """Why restoring files ``names`` into ``target`` would fail now ('' when nothing)."""
    if not target.is_dir():
        return f"the target {target} is not an existing directory"
    if not os.access(target, os.W_OK | os.X_OK):
        return f"the target {target} is not writable by this account"
    taken = [n for n in names if (target / n).exists() or (target / n).is_symlink()]
    if taken:
        more = f" and {len(taken) - 3:,} more" if len(taken) > 3 else ""
        return (
            f"the target {target} already holds {', '.join(taken[:3])}{more}, the restore "
            "name of a backup it asks for (custodian never replaces a file); move "
            f"{'it' if len(taken) == 1 else 'them'} away or choose another directory"
        )
    return ""


def _safe_name(label: str) -> str:
    """A label as a plain file name: letters, digits, dot, dash, underscore; no leading dot."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", label).lstrip("._-")[:120]


def restore_names(backups: list[Backup]) -> dict[str, str]:
    """The file each backup restores to: its label made safe, else its id; made unique."""
    names: dict[str, str] = {}
    seen: set[str] = set()
    for b in backups:
        name = _safe_name(b.label) or b.id
        if name.lower() in seen:
            name = f"{name}.{b.id[:8]}"
        if name.lower() in seen:
            name = b.id
        seen.add(name.lower())
        names[b.id] = name
    return names
