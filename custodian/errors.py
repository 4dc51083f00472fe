"""Errors that reach a person.

Every error carries a message written for the person at the keyboard: what
happened, what was kept safe, and what to do next. Messages never contain key
material, passphrases or plaintext. The CLI prints ``str(error)`` on one line
and exits non-zero; screens show it in a notification.
"""

from __future__ import annotations


class CustodianError(Exception):
    """Base class of every error custodian reports to a person."""

    exit_code = 1
    logged = False  # True once the refusal is in the audit log (not logged again)

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class HomeError(CustodianError):
    """The home directory is missing, unsafe or not a custodian home."""

    exit_code = 3


class ConfigError(CustodianError):
    """The configuration file cannot be read or breaks policy."""

    exit_code = 3


class KeyringError(CustodianError):
    """The OS keyring is unusable or does not hold this home's root key."""

    exit_code = 4


class SealError(CustodianError):
    """A sealed blob failed to open (wrong root key or tampered blob)."""

    exit_code = 4


class BackendError(CustodianError):
    """A KEK backend refused or could not be reached."""

    exit_code = 5


class UnwrapError(BackendError):
    """One wrapped DEK did not unwrap (wrong context, wrong version, tampered)."""


class NotFoundError(CustodianError):
    """A named thing (KEK, version, backup) is not in the catalog."""

    exit_code = 2


class ConflictError(CustodianError):
    """The action would overwrite or duplicate something."""

    exit_code = 2


class ContainerError(CustodianError):
    """A backup container is malformed, tampered, truncated or under another key."""

    exit_code = 6


class CatalogError(CustodianError):
    """The catalog cannot be opened or has an unknown schema."""

    exit_code = 3


class InputError(CustodianError):
    """A value given on the command line or in a dialog is unusable (too long, not text)."""

    exit_code = 2


class MismatchError(CustodianError):
    """The catalog or the configuration disagrees with the signed audit log."""

    exit_code = 8
