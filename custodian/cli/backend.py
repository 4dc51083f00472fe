"""``custodian backend``: the KEK backends of a home (local, vault, aws-kms, ...).

list, check (health: reachable, authenticated, keys present, permissions),
add (a ``[backends.NAME]`` section, audited), credential (seal the wrap-only
credential operators wrap with) and policies (the server policies to create).

What other command groups share from here: :func:`add_backend_options` /
:func:`backend_options` (``kek create --backend vault --vault-address ...``),
and :func:`add_custody_fd` / :func:`custody_for` (the custody credential of a
server backend, read from a file descriptor or the terminal for one command,
never from the configuration, never stored).

A new kind plugs in by adding its options to :data:`CLI_OPTIONS` (flag, the
section's setting, help) and its factory to
:data:`custodian.backends.registry.KINDS`.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from custodian.cli.common import (
    PROG,
    Subparsers,
    add_acting,
    open_service,
    say,
    secret_input,
    unlock_actor,
    usage_error,
)

if TYPE_CHECKING:
    from custodian.backends.base import Health
    from custodian.service import Service

# kind -> (flag, setting in [backends.NAME], type, help). aws-kms adds its own list here.
CLI_OPTIONS: dict[str, list[tuple[str, str, type, str]]] = {
    "vault": [
        ("--vault-address", "address", str, "the server's URL (https, or http to loopback only)"),
        ("--vault-mount", "mount", str, "the transit mount (default transit)"),
        ("--vault-key-prefix", "key_prefix", str, "transit key names start with this"),
        ("--vault-namespace", "namespace", str, "Vault Enterprise namespace"),
        ("--vault-ca-file", "ca_file", str, "CA certificate(s) that sign the server's"),
        ("--vault-client-cert", "client_cert", str, "client certificate (TLS client auth)"),
        ("--vault-client-key", "client_key", str, "its private key"),
        ("--vault-auth", "auth", str, "token (default) or approle"),
        ("--vault-wrap-role-id", "wrap_role_id", str, "AppRole role id of the wrap credential"),
        ("--vault-custody-role-id", "custody_role_id", str, "AppRole role id, custody"),
        ("--vault-timeout", "timeout_seconds", float, "seconds per call (default 5)"),
        ("--vault-batch-items", "batch_items", int, "items per server batch to start at (249)"),
        ("--vault-concurrency", "concurrency", int, "server batches in flight (default 2)"),
    ],
}
BOOL_OPTIONS: dict[str, list[tuple[str, str, str]]] = {
    "vault": [
        (
            "--vault-exportable",
            "exportable",
            "make the transit key exportable with allow_plaintext_backup, so that its "
            "transit backup can be escrowed for break-glass (anyone with the custody "
            "credential can then export the key in plaintext)",
        )
    ],
}


def _dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def add_backend_options(s: argparse.ArgumentParser) -> None:
    """Every kind's settings as ``--KIND-SETTING`` options (for ``backend add`` and
    ``kek create``)."""
    for kind, opts in CLI_OPTIONS.items():
        g = s.add_argument_group(f"{kind} backend settings")
        for flag, _, typ, text in opts:
            g.add_argument(flag, dest=_dest(flag), type=typ, default=None, help=text)
        for flag, _, text in BOOL_OPTIONS.get(kind, []):
            g.add_argument(flag, dest=_dest(flag), action="store_true", help=text)


def backend_options(args: argparse.Namespace, kind: str) -> dict[str, Any]:
    """The ``[backends.NAME]`` settings the options of ``kind`` give ({} when none)."""
    out: dict[str, Any] = {}
    for flag, key, _, _ in CLI_OPTIONS.get(kind, []):
        v = getattr(args, _dest(flag), None)
        if v is not None:
            out[key] = v
    for flag, key, _ in BOOL_OPTIONS.get(kind, []):
        if getattr(args, _dest(flag), False):
            out[key] = True
    return out


def add_custody_fd(s: argparse.ArgumentParser) -> None:
    s.add_argument(
        "--backend-credential-fd",
        "--vault-token-fd",
        dest="backend_credential_fd",
        type=int,
        metavar="N",
        help="a server backend's custody credential (the token or AppRole secret id that "
        "can decrypt and rewrap) from file descriptor N; else asked on the terminal when "
        "needed. Never stored.",
    )


def is_server(svc: Service, backend: str) -> bool:
    return svc.backends.kind(backend) not in ("local", "quorum")


@contextmanager
def custody_for(svc: Service, args: argparse.Namespace, backend: str) -> Iterator[None]:
    """Within the block, ``backend`` holds its custody credential when it is a server
    backend (read once, from --backend-credential-fd or the terminal). An aws-kms
    backend takes its decrypt role's credentials with --kms-credentials-fd instead
    (:func:`custodian.cli.kek.kms_session`)."""
    if not is_server(svc, backend) or svc.backends.kind(backend) == "aws-kms":
        yield
        return
    held = getattr(args, "custody_secret", None)
    if held is not None:  # read once already in this command (kek create's health check)
        with svc.backends.custody(backend, held):
            yield
        return
    fd = getattr(args, "backend_credential_fd", None)
    with (
        secret_input(f"custody credential of backend {backend}: ", fd, "credential") as cred,
        svc.backends.custody(backend, cred),
    ):
        yield


def _print_health(h: Health) -> None:
    mark = "ok" if h.ok else "PROBLEM"
    say(f"{h.backend}: {mark}" + ("" if h.checks else f" ({h.detail})"))
    for c in h.checks:
        say(f"  {'ok ' if c.ok else 'BAD'}  {c.name}: {c.detail}")


def cmd_backend_list(args: argparse.Namespace) -> int:
    with open_service(args) as svc:
        for name in svc.backends.names():
            keks = svc.backends.keks_of(name)
            say(f"{name:<16} {svc.backends.kind(name):<10} KEKs: {', '.join(keks) or 'none'}")
    return 0


def cmd_backend_check(args: argparse.Namespace) -> int:
    """Exit 0 when every backend checked is healthy, 1 when one is not."""
    with open_service(args) as svc:
        names = [args.name] if args.name else svc.backends.names()
        for n in names:
            if n not in svc.backends.names():
                raise usage_error(f"no backend {n!r} in this home; see '{PROG} backend list'.")
        results: list[Health] = []
        for n in names:
            if args.backend_credential_fd is not None and is_server(svc, n):
                with custody_for(svc, args, n):
                    results.append(svc.backends.check(n))
            else:
                results.append(svc.backends.check(n))
        if args.json:
            print(
                json.dumps(
                    [
                        {
                            "backend": h.backend,
                            "ok": h.ok,
                            "detail": h.detail,
                            "checks": [
                                {"name": c.name, "ok": c.ok, "detail": c.detail} for c in h.checks
                            ],
                        }
                        for h in results
                    ],
                    indent=2,
                )
            )
        else:
            for h in results:
                _print_health(h)
        return 0 if all(h.ok for h in results) else 1


def cmd_backend_add(args: argparse.Namespace) -> int:
    with open_service(args) as svc:
        by = unlock_actor(svc, args)
        opts = {"kind": args.kind, **backend_options(args, args.kind)}
        if opts["kind"] == args.name:
            del opts["kind"]
        h = svc.backends.check_options(args.name, opts)
        _print_health(h)
        if not h.checks or not h.checks[0].ok:
            say("nothing was configured: the server is not reachable with these settings")
            return 1
        svc.backends.configure(args.name, opts, by=by)
        say(f"backend {args.name} ({args.kind}) added to {svc.ctx.home.config}")
    return 0


def cmd_backend_credential(args: argparse.Namespace) -> int:
    with open_service(args) as svc:
        by = unlock_actor(svc, args)
        with secret_input(
            f"wrap credential of backend {args.name}: ", args.credential_fd, "credential"
        ) as cred:
            h = svc.backends.set_wrap_credential(args.name, cred, by=by)
        say(f"the wrap credential of backend {args.name} is sealed by this home's root key")
        _print_health(h)
    return 0


def cmd_backend_policies(args: argparse.Namespace) -> int:
    from custodian.backends import vault as V

    with open_service(args) as svc:
        o = svc.ctx.config.backends.get(args.name)
        if o is None or svc.backends.kind(args.name) != "vault":
            raise usage_error(f"{args.name!r} is not a vault backend of this home.")
        opts = V.VaultOptions.parse(args.name, o, svc.ctx.config.home_id)
        for name, hcl in V.policies(opts.mount, opts.key_prefix).items():
            say(f"# {name}: bao policy write {name} - <<'EOF'")
            say(hcl.rstrip())
            say("# EOF")
    return 0


def add_parsers(sub: Subparsers) -> None:
    be = sub.add_parser("backend", help="KEK backends: health, settings, credentials")
    b = be.add_subparsers(dest="backend_command", metavar="COMMAND", required=True)

    s = b.add_parser("list", help="the configured backends and their KEKs")
    s.set_defaults(func=cmd_backend_list)

    s = b.add_parser(
        "check",
        help="health: reachable, authenticated, keys present, permissions (exit 1 if not)",
    )
    s.add_argument("name", nargs="?", metavar="NAME", help="one backend (default: all)")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    add_custody_fd(s)
    s.set_defaults(func=cmd_backend_check)

    s = b.add_parser("add", help="add a server backend to the configuration (custodians)")
    s.add_argument("name", metavar="NAME", help="the section's name, e.g. vault")
    s.add_argument("--kind", default="vault", help="vault (default) or aws-kms")
    add_backend_options(s)
    add_acting(s)
    s.set_defaults(func=cmd_backend_add)

    s = b.add_parser(
        "credential",
        help="seal the wrap-only credential operators wrap with (custodians; refused if it "
        "can decrypt)",
    )
    s.add_argument("name", metavar="NAME")
    s.add_argument("--credential-fd", type=int, metavar="N", help="read it from file descriptor N")
    add_acting(s)
    s.set_defaults(func=cmd_backend_credential)

    s = b.add_parser("policies", help="the server policies for the two credentials (HCL)")
    s.add_argument("name", metavar="NAME")
    s.set_defaults(func=cmd_backend_policies)


def prepare_new_kek_backend(svc: Service, args: argparse.Namespace, by: Any) -> None:
    """Before ``kek create --backend NAME``: configure NAME from its options when they are
    given, check its health with the custody credential (nothing is created when the
    server is unreachable, refuses the credential, or lacks a permission), and seal the
    wrap credential when one is given. The custody credential read here is kept on
    ``args`` for :func:`custody_for` (in memory, for this command only)."""
    from custodian.errors import BackendError

    name = args.backend
    if name in ("local", "quorum"):
        return
    known = name in svc.backends.names()
    kind = svc.backends.kind(name) if known else name
    opts = backend_options(args, kind)
    if not known and not opts:
        raise usage_error(
            f"backend {name!r} is not configured: give its settings (--vault-address URL "
            f"...) or add it first with '{PROG} backend add {name}'. Nothing was created."
        )
    fd = getattr(args, "backend_credential_fd", None)
    cred = secret_input(f"custody credential of backend {name}: ", fd, "credential")
    args.custody_secret = cred
    wfd = getattr(args, "wrap_credential_fd", None)
    wrap = secret_input("wrap credential: ", wfd, "credential") if wfd is not None else None
    try:
        if opts or wrap is not None:
            merged = {**svc.ctx.config.backends.get(name, {}), **opts}
            h = svc.backends.check_options(name, merged, custody=cred, wrap=wrap)
        else:
            with svc.backends.custody(name, cred):
                h = svc.backends.check(name)
        _print_health(h)
        if not h.ok:
            raise BackendError(f"backend {name} is not ready ({h.detail}); nothing was created.")
        if opts:
            svc.backends.configure(name, opts, by=by)
        if wrap is not None:
            svc.backends.set_wrap_credential(name, wrap, by=by)
    finally:
        if wrap is not None:
            wrap.wipe()


def add_session_custody(s: argparse.ArgumentParser) -> None:
    """For commands that may touch a server backend's keys without naming a KEK (restore
    run, approve): the credential, and which backend it is for."""
    add_custody_fd(s)
    s.add_argument(
        "--credential-backend",
        metavar="NAME",
        help="the backend --backend-credential-fd is for (default: the home's only server backend)",
    )


@contextmanager
def session_custody(svc: Service, args: argparse.Namespace) -> Iterator[None]:
    """The custody credential of one server backend for this command, when given."""
    if getattr(args, "backend_credential_fd", None) is None:
        yield
        return
    name = getattr(args, "credential_backend", None)
    if name is None:
        servers = [n for n in svc.backends.names() if is_server(svc, n)]
        if len(servers) != 1:
            raise usage_error(
                "--backend-credential-fd: say which backend it is for with "
                f"--credential-backend NAME (this home has {', '.join(servers) or 'none'})."
            )
        name = servers[0]
    with custody_for(svc, args, name):
        yield
