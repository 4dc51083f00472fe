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


@dataclass(frozen=True)
class Policy:
    approval_quorum: int = 2
    session_minutes: int = 60
    request_hours: int = 24
    rotation_days: int = 90
    retirement_wait_days: int = 7
    # Exists only so that a configuration asking for it is refused by name:
    # the person who asked for something never approves it (DESIGN.md).
    requester_may_approve: bool = False

    def check(self) -> None:
        if self.approval_quorum < 2:
            raise ConfigError(
                f"policy.approval_quorum is {self.approval_quorum}, but dual control needs "
                "at least 2 distinct custodians; nothing was done. Set it to 2 or more."
            )
        if self.requester_may_approve:
            raise ConfigError(
                "policy.requester_may_approve is true, but the person who asks for a restore "
                "or a key destruction never approves it; nothing was done. Remove the setting."
            )
        for name in ("session_minutes", "request_hours", "rotation_days"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"policy.{name} must be positive; nothing was done.")
        if self.retirement_wait_days < 0:
            raise ConfigError("policy.retirement_wait_days must be 0 or more; nothing was done.")


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
            values: dict[str, Any] = {
                k: (v if isinstance(v, bool) else int(v)) for k, v in pol.items()
            }
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

    def dumps(self) -> str:
        p = self.policy
        lines = [
            "# custodian home configuration. Policy is enforced when this file is loaded.",
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
