"""Temporary: the flat method names of the one-class facade, kept while call sites move
to the capability namespaces (issue 10). Removed in the same change."""

from __future__ import annotations

from typing import Any

_FLAT = {
    "keks": ("keys", "list"),
    "kek": ("keys", "get"),
    "create_kek": ("keys", "create"),
    "add_kek_version": ("keys", "add_version"),
    "rotate_preview": ("keys", "rotate_preview"),
    "rewrap_workers": ("keys", "rewrap_workers"),
    "rotate": ("keys", "rotate"),
    "rewrap": ("keys", "rewrap"),
    "rewrap_jobs": ("keys", "jobs"),
    "rewrap_failures": ("keys", "failures"),
    "retire_version": ("keys", "retire"),
    "request_destroy": ("keys", "request_destroy"),
    "backend": ("keys", "backend"),
    "encrypt_backup": ("backups", "encrypt"),
    "import_backup": ("backups", "import_file"),
    "backups": ("backups", "list"),
    "count_backups": ("backups", "count"),
    "backup": ("backups", "get"),
    "backup_count": ("backups", "total"),
    "people": ("people", "list"),
    "person": ("people", "get"),
    "needs_bootstrap": ("people", "needs_bootstrap"),
    "begin_enrolment": ("people", "begin_enrolment"),
    "complete_enrolment": ("people", "complete_enrolment"),
    "replace_signing_key": ("people", "replace_key"),
    "begin_totp_replacement": ("people", "begin_totp_replacement"),
    "complete_totp_replacement": ("people", "complete_totp_replacement"),
    "disable_person": ("people", "disable"),
    "demo_codes": ("people", "demo_codes"),
    "unlock": ("auth", "unlock"),
    "check_totp": ("auth", "check_totp"),
    "sign_in": ("auth", "sign_in"),
    "sign_out": ("auth", "sign_out"),
    "audit_entries": ("audit", "entries"),
    "audit_verify": ("audit", "verify"),
    "audit_checkpoint": ("audit", "checkpoint"),
    "requests": ("approvals", "requests"),
    "request": ("approvals", "get"),
    "inbox": ("approvals", "inbox"),
    "approve": ("approvals", "approve"),
    "deny": ("approvals", "deny"),
    "cancel": ("approvals", "cancel"),
    "expire_due": ("approvals", "expire_due"),
    "request_restore": ("restores", "request"),
    "run_restore": ("restores", "run"),
    "_decrypt_backup": ("restores", "_decrypt_backup"),
    "_unwrap": ("restores", "_unwrap"),
}


class FlatNames:
    def __getattr__(self, name: str) -> Any:
        try:
            ns, meth = _FLAT[name]
        except KeyError:
            raise AttributeError(name) from None
        return getattr(object.__getattribute__(self, ns), meth)

    _home_actor = property(lambda self: self.ctx.home_actor)
    _load_ksk = property(lambda self: self.ctx.load_ksk)

    @staticmethod
    def rewrap_workers(backend: str) -> int:
        from custodian.service.keys import Keys

        return Keys.rewrap_workers(backend)


def _callable_namespaces() -> None:
    from custodian.service.backups import Backups
    from custodian.service.people import People

    Backups.__call__ = Backups.list  # type: ignore[attr-defined]
    People.__call__ = People.list  # type: ignore[attr-defined]


_callable_namespaces()
