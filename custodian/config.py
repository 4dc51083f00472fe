"""The home's configuration (TOML): keyring choice, backends, defaults, policy.

Policy is checked when the file is loaded, so an unsafe policy (a quorum of 0
or 1, for example) stops every command before it acts.
"""

from __future__ import annotations

import tomllib
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from custodian.errors import ConfigError
from custodian.home import write_private

CONFIG_FORMAT = 1
SUITES = ("mlkem768-x25519", "x25519", "p256")
DEFAULT_SUITE = "mlkem768-x25519"
KEYRING_BACKENDS = ("system", "home-file")
CONTAINER_DIGESTS = ("tags", "sha256")  # custodian.container.DIGESTS


# Each policy setting: (lowest, highest, which way is tighter, unit). The bounds hold for
# every home, whatever its log says: a value outside them is refused with one line,
# never stored. "up" means a larger value is stricter (a larger quorum, a longer wait).
POLICY_LIMITS: dict[str, tuple[int, int, str, str]] = {
    "approval_quorum": (2, 9, "up", "custodians"),
    "session_minutes": (1, 1440, "down", "minutes"),
    "request_hours": (1, 168, "down", "hours"),
    "rotation_days": (1, 730, "down", "days"),
    "retirement_wait_days": (0, 365, "up", "days"),
    "auth_backoff_after": (1, 20, "down", "failed attempts"),
    "auth_backoff_seconds": (1, 3600, "up", "seconds"),
    "auth_lockout_after": (2, 100, "down", "failed attempts"),
    "auth_lockout_minutes": (1, 1440, "up", "minutes"),
}


@dataclass(frozen=True)
class Policy:
    approval_quorum: int = 2
    session_minutes: int = 60
    request_hours: int = 24
    rotation_days: int = 90
    retirement_wait_days: int = 7
    # Online guessing (wrong passphrases, wrong TOTP codes), counted per person: after
    # auth_backoff_after failures in a row each further attempt waits
    # auth_backoff_seconds, doubling per failure; after auth_lockout_after the person is
    # locked for auth_lockout_minutes, doubling per further failure up to a day. Only a
    # success (or an approved person.unlock request) starts the count again. With these
    # numbers a guesser gets 10 tries in the first quarter hour and about one a day
    # after the first day: a 6-digit code (3 of 10^6 accepted at a time) falls with odds
    # of about 1 in 1,000 a year, and every try is in the log.
    auth_backoff_after: int = 5
    auth_backoff_seconds: int = 30
    auth_lockout_after: int = 10
    auth_lockout_minutes: int = 60
    # Exists only so that a configuration asking for it is refused by name:
    # the person who asked for something never approves it (DESIGN.md).
    requester_may_approve: bool = False

    def check(self) -> None:
        if self.requester_may_approve:
            raise ConfigError(
                "policy.requester_may_approve is true, but the person who asks for a restore "
                "or a key destruction never approves it; nothing was done. Remove the setting."
            )
        for name, (low, high, _, unit) in POLICY_LIMITS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(
                    f"policy.{name} must be a whole number of {unit} (got {value!r}); "
                    "nothing was done."
                )
            if not low <= value <= high:
                why = (
                    " (dual control needs at least 2 distinct custodians)"
                    if name == "approval_quorum" and value < low
                    else ""
                )
                raise ConfigError(
                    f"policy.{name} is {value:,}, outside {low:,} to {high:,} {unit}{why}; "
                    "nothing was done."
                )
        if self.auth_lockout_after <= self.auth_backoff_after:
            raise ConfigError(
                f"policy.auth_lockout_after ({self.auth_lockout_after}) must be more than "
                f"policy.auth_backoff_after ({self.auth_backoff_after}); nothing was done."
            )

    def values(self) -> dict[str, int]:
        """Every setting the log records (requester_may_approve is always false)."""
        return {k: int(getattr(self, k)) for k in POLICY_LIMITS}

    def tighter(self, name: str, new: int) -> bool:
        """Whether changing ``name`` to ``new`` keeps the policy at least as strict."""
        old = int(getattr(self, name))
        return new >= old if POLICY_LIMITS[name][2] == "up" else new <= old


def parse_policy_value(name: str, text: str | int) -> int:
    """A setting's value as typed (``policy set``) or read, checked to be a whole number."""
    if name not in POLICY_LIMITS:
        raise ConfigError(
            f"{name!r} is not a policy setting; use one of {', '.join(POLICY_LIMITS)}."
        )
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    s = str(text).strip().replace("_", "")
    if not (s.isdigit() and len(s) <= 12):
        raise ConfigError(
            f"policy.{name} must be a whole number of {POLICY_LIMITS[name][3]} "
            f"(got {str(text)[:40]!r}); nothing was done."
        )
    return int(s)


@dataclass(frozen=True)
class Config:
    home_id: str
    keyring_backend: str = "system"
    default_kek: str = "backups"
    default_suite: str = DEFAULT_SUITE
    container_digest: str = "tags"
    backends: dict[str, dict[str, Any]] = field(default_factory=lambda: {"local": {}})
    policy: Policy = field(default_factory=Policy)
    demo: bool = False

    @classmethod
    def new(
        cls,
        *,
        keyring_backend: str = "system",
        default_kek: str = "backups",
        suite: str = DEFAULT_SUITE,
        demo: bool = False,
    ) -> Config:
        cfg = cls(
            home_id=str(uuid.uuid4()),
            keyring_backend=keyring_backend,
            default_kek=default_kek,
            default_suite=suite,
            demo=demo,
        )
        cfg.check()
        return cfg

    def check(self) -> None:
        if self.keyring_backend not in KEYRING_BACKENDS:
            raise ConfigError(
                f"keyring.backend is {self.keyring_backend!r}; use one of "
                f"{', '.join(KEYRING_BACKENDS)}."
            )
        if self.default_suite not in SUITES:
            raise ConfigError(
                f"defaults.suite is {self.default_suite!r}; use one of {', '.join(SUITES)}."
            )
        if self.container_digest not in CONTAINER_DIGESTS:
            raise ConfigError(
                f"defaults.container_digest is {self.container_digest!r}; use one of "
                f"{', '.join(CONTAINER_DIGESTS)}."
            )
        self.policy.check()

    @classmethod
    def load(cls, path: Path) -> Config:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise ConfigError(f"cannot read the configuration {path}: {e}") from None
        except UnicodeDecodeError as e:
            raise ConfigError(
                f"the configuration {path} is not UTF-8 text (byte {e.start} is not), so it "
                "is not a custodian.toml; nothing was done. Restore it from a copy."
            ) from None
        if data.get("format") != CONFIG_FORMAT:
            raise ConfigError(
                f"{path} has configuration format {data.get('format')!r}; this custodian "
                f"reads format {CONFIG_FORMAT}. Upgrade custodian."
            )
        try:
            pol = data.get("policy", {})
            known = set(Policy.__dataclass_fields__)
            unknown = set(pol) - known
            if unknown:
                raise ConfigError(
                    f"unknown policy settings in {path}: {', '.join(sorted(unknown))}"
                )
            values: dict[str, Any] = {}
            for k, v in pol.items():
                if k == "requester_may_approve":
                    values[k] = v
                elif isinstance(v, bool) or not isinstance(v, int):
                    raise ConfigError(
                        f"policy.{k} in {path} must be a whole number of "
                        f"{POLICY_LIMITS[k][3]} (got {v!r}); nothing was done."
                    )
                else:
                    values[k] = v
            policy = Policy(**values)
            cfg = cls(
                home_id=str(data["home_id"]),
                keyring_backend=str(data.get("keyring", {}).get("backend", "system")),
                default_kek=str(data.get("defaults", {}).get("kek", "backups")),
                default_suite=str(data.get("defaults", {}).get("suite", DEFAULT_SUITE)),
                container_digest=str(data.get("defaults", {}).get("container_digest", "tags")),
                backends={str(k): dict(v) for k, v in data.get("backends", {"local": {}}).items()},
                policy=policy,
                demo=bool(data.get("demo", False)),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"the configuration {path} is incomplete or malformed: {e}") from None
        cfg.check()
        return cfg

    def recorded_mismatch(
        self,
        home_id: str,
        demo: bool,
        policy: dict[str, Any],
        policy_at: dict[str, int],
        path: object,
    ) -> str:
        """The refusal's message when this configuration's home id, demo flag or policy
        differs from what the signed log records ('' when they agree). ``policy`` holds
        the settings the log records (a setting it never names has its default)."""
        if home_id and self.home_id != home_id:
            return (
                f"{path} is the configuration of home {self.home_id}, but the signed audit "
                f"log is home {home_id}'s; nothing was done. Point --home at the home this "
                "configuration belongs to."
            )
        if self.demo != demo:
            return (
                f"{path} sets demo = {'true' if self.demo else 'false'}, but the signed audit "
                f"log records {'true' if demo else 'false'} (fixed when the home was made, "
                "entry 1); nothing was done. Demo behaviour is fixed when a home is made and "
                "is never switched on later: set demo back."
            )
        defaults = Policy().values()
        mine = self.policy.values()
        for name in POLICY_LIMITS:
            logged = policy.get(name, defaults[name])
            if mine[name] != logged:
                at = policy_at.get(name)
                where = f"entry {at}" if at else "its default"
                return (
                    f"{path} sets policy.{name} = {mine[name]}, but the signed audit log "
                    f"records {logged} ({where}); nothing was done. The configuration was "
                    f"changed outside custodian: put {name} = {logged} back, and change the "
                    f"policy with 'custodian policy set {name} VALUE --as NAME'."
                )
        return ""

    def dumps(self) -> str:
        p = self.policy
        lines = [
            "# custodian home configuration. The [policy] and demo values must be the ones the",
            "# signed audit log records: change them with 'custodian policy set', not here.",
            f"format = {CONFIG_FORMAT}",
            f'home_id = "{self.home_id}"',
            f"demo = {'true' if self.demo else 'false'}",
            "",
            "[keyring]",
            "# system: the OS keyring through python-keyring's own backend selection",
            "# (PYTHON_KEYRING_BACKEND, keyringrc.cfg). home-file: a file inside this home,",
            "# for demos and tests only, since it keeps the root key beside what it protects.",
            f'backend = "{self.keyring_backend}"',
            "",
            "[defaults]",
            f'kek = "{self.default_kek}"',
            f'suite = "{self.default_suite}"',
            "# how the catalog names each new container (docs/format.md section 6): tags",
            "# (SHA-256 over header, chunk tags and size: free) or sha256 (of the whole file,",
            "# as sha256sum prints it: media can be checked without a key, at about half the",
            "# encryption speed). Backups already catalogued keep the digest they have.",
            f'container_digest = "{self.container_digest}"',
            "",
        ]
        for name, opts in self.backends.items():
            lines.append(f"[backends.{name}]")
            for k, v in opts.items():
                lines.append(f"{k} = {_toml_value(v)}")
            lines.append("")
        lines += [
            "[policy]",
            f"approval_quorum = {p.approval_quorum}",
            f"session_minutes = {p.session_minutes}",
            f"request_hours = {p.request_hours}",
            f"rotation_days = {p.rotation_days}",
            f"retirement_wait_days = {p.retirement_wait_days}",
            f"auth_backoff_after = {p.auth_backoff_after}",
            f"auth_backoff_seconds = {p.auth_backoff_seconds}",
            f"auth_lockout_after = {p.auth_lockout_after}",
            f"auth_lockout_minutes = {p.auth_lockout_minutes}",
            "",
        ]
        return "\n".join(lines)

    def save(self, path: Path) -> None:
        write_private(path, self.dumps().encode("utf-8"))


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    s = str(v).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{s}"'
