"""The signed, hash-chained audit log (specified in docs/audit-format.md).

Append-only JSON Lines in numbered segments under ``<home>/audit/``. Each
entry is signed with Ed25519 by the acting person's key. An entry is::

    {"seq", "time", "actor", "action", "subject", "outcome", "details",
     "prev", "key_id", "hash", "sig"}

``hash`` is SHA-256 over ``b"custodian audit v1\\n"`` followed by the
canonical encoding of the entry without ``hash`` and ``sig``; ``sig`` is the
Ed25519 signature of ``b"custodian audit sig v1\\0"`` + the 32 hash bytes.
Canonical encoding: JSON, keys sorted, no whitespace, UTF-8, no floats.

Keys are announced in the log itself: the ``home.init`` entry carries the
home key, and ``person.enrol`` / ``person.key.replace`` entries carry the new
public key. So :func:`verify` needs nothing but the log (and, to catch a cut
tail, a checkpoint exported earlier).

Appends are fail-closed: the entry is written and fsynced before the caller
goes on, under an exclusive lock so that the TUI and a cron job never fork
the chain. If the write fails the caller's action does not happen.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from custodian.catalog import utcnow
from custodian.errors import CustodianError

HASH_PREFIX = b"custodian audit v1\n"
SIG_PREFIX = b"custodian audit sig v1\0"
CHECKPOINT_PREFIX = b"custodian audit checkpoint v1\0"
GENESIS = "0" * 64
SEGMENT_ENTRIES = 10_000
KEY_ANNOUNCING = ("home.init", "person.enrol", "person.key.replace")


class AuditError(CustodianError):
    """The audit log cannot be written (the action did not happen) or does not verify."""

    exit_code = 8


def canonical(obj: Any) -> bytes:
    _no_floats(obj)
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _no_floats(obj: Any) -> None:
    if isinstance(obj, float):
        raise TypeError("audit details may not hold floats (their encoding is ambiguous)")
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, str):
                raise TypeError("audit detail keys must be strings")
            _no_floats(v)
    elif isinstance(obj, list):
        for v in obj:
            _no_floats(v)


def entry_hash(entry: dict[str, Any]) -> str:
    body = {k: v for k, v in entry.items() if k not in ("hash", "sig")}
    return hashlib.sha256(HASH_PREFIX + canonical(body)).hexdigest()


def _b64_strict(s: str) -> bytes:
    """Base64 in its one canonical spelling, else ValueError.

    ``b64decode`` skips stray characters and ignores the padding bits of the
    last character, so one stored signature would have several spellings: a
    changed byte in the log or a checkpoint that still verified.
    """
    raw = base64.b64decode(s, validate=True)
    if base64.b64encode(raw).decode() != s:
        raise ValueError("base64 not in its canonical spelling")
    return raw


Signer = Callable[[bytes], bytes]


class AuditLog:
    def __init__(self, directory: Path) -> None:
        self.dir = directory

    # ------------------------------------------------------------ files

    def segments(self) -> list[Path]:
        if not self.dir.is_dir():
            return []
        return sorted(self.dir.glob("segment-*.jsonl"))

    def _segment_path(self, n: int) -> Path:
        return self.dir / f"segment-{n:06d}.jsonl"

    def _last_line(self, path: Path) -> bytes | None:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            end = f.tell()
            if end == 0:
                return None
            pos, buf = end, b""
            while pos > 0:
                step = min(4096, pos)
                pos -= step
                f.seek(pos)
                buf = f.read(step) + buf
                lines = buf.rstrip(b"\n").split(b"\n")
                if len(lines) > 1 or pos == 0:
                    return lines[-1]
        return None

    def head(self) -> tuple[int, str]:
        """(sequence number, hash) of the newest entry; (0, GENESIS) for an empty log."""
        for seg in reversed(self.segments()):
            line = self._last_line(seg)
            if line:
                try:
                    e = json.loads(line)
                    return int(e["seq"]), str(e["hash"])
                except (ValueError, KeyError, TypeError):
                    raise AuditError(
                        f"the newest audit entry (in {seg}) is damaged, so nothing can be "
                        "chained after it; the action was not carried out. Run 'custodian "
                        "audit verify' to see where, and restore the log from a copy."
                    ) from None
        return 0, GENESIS

    # ------------------------------------------------------------ append

    def append(
        self,
        *,
        actor: str,
        key_id: str,
        sign: Signer,
        action: str,
        subject: str,
        outcome: str = "ok",
        details: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Write one signed entry and fsync it. Raises AuditError if it cannot."""
        try:
            self.dir.mkdir(mode=0o700, exist_ok=True)
            lock_fd = os.open(self.dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise _write_error(self.dir, e) from None
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            try:
                seq, prev = self.head()
            except OSError as e:
                raise _write_error(self.dir, e) from None
            entry: dict[str, Any] = {
                "seq": seq + 1,
                "time": utcnow(),
                "actor": actor,
                "action": action,
                "subject": subject,
                "outcome": outcome,
                "details": details or {},
                "prev": prev,
                "key_id": key_id,
            }
            entry["hash"] = entry_hash(entry)
            entry["sig"] = base64.b64encode(
                sign(SIG_PREFIX + bytes.fromhex(entry["hash"]))
            ).decode()
            line = canonical(entry) + b"\n"
            path = self._segment_path((seq // SEGMENT_ENTRIES) + 1)
            new = not path.exists()
            try:
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    size = os.fstat(fd).st_size
                    try:
                        if os.write(fd, line) != len(line):
                            raise OSError(28, "short write (disk full?)")
                        os.fsync(fd)
                    except OSError:
                        # A line not durably written must not stay behind (its action is
                        # rolled back), nor half a line that the next entry would follow.
                        with contextlib.suppress(OSError):
                            os.ftruncate(fd, size)
                        raise
                finally:
                    os.close(fd)
                if new:
                    dfd = os.open(self.dir, os.O_RDONLY)
                    try:
                        os.fsync(dfd)
                    finally:
                        os.close(dfd)
            except OSError as e:
                raise _write_error(self.dir, e) from None
            return entry
        finally:
            os.close(lock_fd)

    # ------------------------------------------------------------ read

    def entries(
        self,
        decode: Callable[[str], Any] | None = None,
        before_line: Callable[[], None] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every entry, oldest first; a line that is not JSON as ``{"_malformed": where}``.

        ``decode`` replaces ``json.loads`` (given the line decoded as json.loads
        decodes bytes); ``before_line`` is called before each line is decoded.
        """
        for seg in self.segments():
            with open(seg, "rb") as f:
                for n, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    if before_line is not None:
                        before_line()
                    try:
                        if decode is None:
                            e = json.loads(line)
                        else:  # what json.loads does with bytes
                            e = decode(line.decode(json.detect_encoding(line), "surrogatepass"))
                    except ValueError:
                        e = {"_malformed": f"{seg.name} line {n}"}
                    if not isinstance(e, dict):
                        e = {"_malformed": f"{seg.name} line {n} is not a JSON object"}
                    yield e

    def count(self) -> int:
        return self.head()[0]


def _write_error(directory: Path, e: OSError) -> AuditError:
    return AuditError(
        f"the audit log in {directory} cannot be written ({e.strerror or e}); the action was "
        "not carried out and nothing else changed. Free space or fix permissions, then retry."
    )


# ---------------------------------------------------------------- verification

# The verify loop parses and re-hashes every entry; over a long log that cost
# a third as much again as the Ed25519 checks. Two things are done once here
# instead of per entry, with byte-identical results:
# - the encoder that ``canonical`` builds inside ``json.dumps`` on every call
#   (the same options, so the same bytes);
# - ``_no_floats``, which walks the whole entry: an entry read back from JSON
#   has only string keys, and holds a float only if the parser met a number
#   with a fraction or an exponent, or NaN or Infinity, which the hooks below
#   note. Such a line goes through ``entry_hash`` as before, refused the same way.
_CANONICAL_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _parsed_entry_hash(entry: dict[str, Any]) -> str:
    """``entry_hash`` of an entry parsed from the log that holds no float."""
    body = {k: v for k, v in entry.items() if k not in ("hash", "sig")}
    return hashlib.sha256(HASH_PREFIX + _CANONICAL_ENCODER.encode(body).encode()).hexdigest()


def _entries_for_verify(log: AuditLog) -> Iterator[tuple[Any, bool]]:
    """What ``log.entries()`` yields, each with whether its line held a float."""
    floats: list[str] = []

    def note_float(text: str) -> float:
        floats.append(text)
        return float(text)

    decoder = json.JSONDecoder(parse_float=note_float, parse_constant=note_float)
    for e in log.entries(decoder.decode, floats.clear):
        yield e, bool(floats)


@dataclass
class KnownKey:
    person: str
    public: Any
    since: int
    replaced_at: int | None = None


@dataclass
class VerifyResult:
    ok: bool
    entries: int
    head: str
    first_bad: int | None = None
    reason: str = ""
    checkpoint: str = ""
    keys: int = 0
    problems: list[str] = field(default_factory=list)
    aborted: int = 0  # ok entries a later compensating entry cancels (the action did not happen)

    def summary(self) -> str:
        if self.ok:
            cp = f"; {self.checkpoint}" if self.checkpoint else ""
            ab = f", {self.aborted} cancelled by a later entry" if self.aborted else ""
            return (
                f"audit log verified: {self.entries} entries{ab}, chain and signatures "
                f"intact, {self.keys} signing keys known{cp}; head {self.head[:16]}…"
            )
        where = f"entry {self.first_bad}" if self.first_bad is not None else "the log"
        return f"audit log does NOT verify: {where}: {self.reason}"


Progress = Callable[[int, int], None]


def verify(
    log: AuditLog,
    *,
    checkpoint: dict[str, Any] | None = None,
    progress: Progress | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> VerifyResult:
    """Check the whole log offline. Names the first bad entry and why."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import ed25519

    keys: dict[str, KnownKey] = {}
    disabled: dict[str, int] = {}
    try:
        total = log.count()
    except AuditError:
        total = 0  # a damaged newest line: reported below, where the entries are read
    prev, expect_seq, last_hash = GENESIS, 1, GENESIS
    hashes_at: dict[int, str] = {}
    roles: dict[str, set[str]] = {}
    if checkpoint is not None and not (
        isinstance(checkpoint, dict)
        and isinstance(checkpoint.get("seq"), int)
        and set(checkpoint) >= CHECKPOINT_FIELDS
    ):
        return VerifyResult(
            False, 0, GENESIS, None, "the checkpoint file is not a custodian audit checkpoint"
        )
    want_seq = int(checkpoint["seq"]) if checkpoint else None
    # Entries that a later compensating entry cancels (section "Compensating entries"):
    # known before the pass, so that a cancelled entry never takes effect; each
    # compensating entry is then checked where it stands.
    cancelled_by = _compensated(log)
    voided: dict[int, tuple[str, str, str, str]] = {}  # seq -> action, subject, hash, key

    def bad(seq: int | None, why: str) -> VerifyResult:
        return VerifyResult(False, expect_seq - 1, last_hash, seq, why, keys=len(keys))

    for e, has_float in _entries_for_verify(log):
        if cancelled is not None and cancelled():
            return VerifyResult(False, expect_seq - 1, last_hash, None, "verification cancelled")
        if "_malformed" in e:
            return bad(expect_seq, f"not valid JSON ({e['_malformed']})")
        try:
            seq = int(e["seq"])
            if seq != expect_seq:
                what = "missing" if seq > expect_seq else "repeated or out of order"
                return bad(
                    expect_seq, f"sequence gap: expected {expect_seq}, found {seq} (entries {what})"
                )
            if e["prev"] != prev:
                return bad(
                    seq,
                    "previous-hash link broken (an entry before it was removed, "
                    "swapped or altered)",
                )
            # No float in the line: entry_hash's float check cannot fire, so hash directly.
            if (entry_hash(e) if has_float else _parsed_entry_hash(e)) != e["hash"]:
                return bad(seq, "content does not match its hash (the entry was edited)")
            kid = e["key_id"]
            if seq == 1:
                if e["action"] != "home.init":
                    return bad(1, "the log does not start with home.init")
                pub = base64.b64decode(e["details"]["public_key"])
                keys[kid] = KnownKey(e["actor"], ed25519.Ed25519PublicKey.from_public_bytes(pub), 1)
            k = keys.get(kid)
            if k is None:
                return bad(seq, f"signed by key {kid[:12]}…, which no earlier entry enrolled")
            if k.person != e["actor"]:
                return bad(
                    seq,
                    f"actor is {e['actor']} but the key belongs to {k.person} "
                    "(re-signed by someone else)",
                )
            if k.replaced_at is not None and seq > k.replaced_at:
                return bad(seq, f"signed with {k.person}'s key replaced at entry {k.replaced_at}")
            if e["actor"] in disabled and seq > disabled[e["actor"]]:
                return bad(seq, f"signed by {e['actor']}, disabled at entry {disabled[e['actor']]}")
            try:
                k.public.verify(_b64_strict(e["sig"]), SIG_PREFIX + bytes.fromhex(e["hash"]))
            except (InvalidSignature, ValueError):
                return bad(seq, "signature does not verify")
            if e["outcome"] == "ok":
                why = _unauthorised(e, roles, disabled)
                if why:
                    return bad(seq, why)
                if seq in cancelled_by:  # it did not happen: nothing to learn from it
                    voided[seq] = (e["action"], e["subject"], e["hash"], kid)
                else:
                    _learn(e, keys, disabled, ed25519)
                    if e["action"] == "person.enrol":
                        roles[e["subject"].removeprefix("person:")] = set(e["details"]["roles"])
            elif e["outcome"] == "failed" and "aborts" in e["details"]:
                why = _bad_compensation(e, voided, cancelled_by)
                if why:
                    return bad(seq, why)
        except (KeyError, TypeError, ValueError) as ex:
            return bad(expect_seq, f"malformed entry ({type(ex).__name__}: {ex})")
        prev = last_hash = e["hash"]
        if want_seq is not None and seq == want_seq:
            hashes_at[seq] = e["hash"]
        expect_seq += 1
        if progress is not None and (seq % 1000 == 0 or seq == total):
            progress(seq, total)
    n = expect_seq - 1
    if n == 0:
        return VerifyResult(
            False, 0, GENESIS, None, "the log is empty; every home's log starts with home.init"
        )
    res = VerifyResult(True, n, last_hash, keys=len(keys), aborted=len(voided))
    if checkpoint is not None:
        problem, where = _check_checkpoint(checkpoint, keys, hashes_at, n)
        if problem:
            return VerifyResult(False, n, last_hash, where, problem, keys=len(keys))
        res.checkpoint = f"checkpoint at entry {want_seq} by {checkpoint['actor']} holds"
    return res


def _compensated(log: AuditLog) -> dict[int, int]:
    """seq of each entry a compensating entry cancels -> seq of the first that does.

    A compensating entry has ``outcome: "failed"`` and ``details.aborts``; only
    lines that hold the bytes ``"aborts":`` are parsed. What is found here is
    trusted only once the main pass has verified the compensating entry itself.
    """
    out: dict[int, int] = {}
    for seg in log.segments():
        data = seg.read_bytes()
        if b'"aborts":' not in data:
            continue
        for line in data.split(b"\n"):
            if b'"aborts":' not in line:
                continue
            try:
                e = json.loads(line)
                target, seq = e["details"]["aborts"], e["seq"]
            except (ValueError, KeyError, TypeError):
                continue
            if (
                e.get("outcome") == "failed"
                and type(target) is int
                and type(seq) is int
                and target not in out
            ):
                out[target] = seq
    return out


def _bad_compensation(
    e: dict[str, Any], cancelled: dict[int, tuple[str, str, str, str]], by: dict[int, int]
) -> str:
    """Why a compensating entry is not acceptable ('' when it is)."""
    target, d = e["details"]["aborts"], e["details"]
    if type(target) is not int:
        raise TypeError("details.aborts is not an integer")
    if by.get(target) != e["seq"]:
        return f"cancels entry {target}, which entry {by.get(target)} already cancelled"
    if target not in cancelled:
        return f"cancels entry {target}, which is not an earlier entry with outcome ok"
    action, subject, h, kid = cancelled[target]
    if (action, subject, h) != (e["action"], e["subject"], d.get("aborts_hash")):
        return f"cancels entry {target} but names another action, subject or hash"
    if action.startswith("person.") and e["key_id"] != kid:
        return f"cancels entry {target}, a change of keys or roles, signed by another key"
    return ""


CHECKPOINT_FIELDS = {"format", "home_id", "seq", "head", "time", "actor", "key_id", "sig"}
KEY_ID_PREFIX = b"custodian signing key v1\0"  # custodian.people.key_id


def _unauthorised(e: dict[str, Any], roles: dict[str, set[str]], disabled: dict[str, int]) -> str:
    """Why the signer of a key-changing entry had no right to it ('' when they had).

    A custodian enrols and disables people; a person or a custodian replaces a
    person's key; the home key enrols only while the home has no custodian. An
    announced key id must be the hash of the announced public key.
    """
    action = e["action"]
    if action not in ("person.enrol", "person.key.replace", "person.disable", "person.enable"):
        return ""
    actor, subject = e["actor"], e["subject"].removeprefix("person:")
    custodian = "custodian" in roles.get(actor, set()) and actor not in disabled
    if action == "person.enrol":
        if actor == "home":
            if any("custodian" in r and p not in disabled for p, r in roles.items()):
                return "the home key enrolled someone after the home had a custodian"
        elif not custodian:
            return f"{actor} enrolled {subject} without holding the custodian role"
        if subject in roles:
            return f"{subject} was already enrolled"
    elif action == "person.key.replace":
        if actor != subject and not custodian:
            return f"{actor} replaced {subject}'s key without holding the custodian role"
    elif not custodian:
        return f"{actor} changed {subject}'s state without holding the custodian role"
    if action in ("person.enrol", "person.key.replace"):
        d = e["details"]
        pub = base64.b64decode(d["public_key"], validate=True)
        if hashlib.sha256(KEY_ID_PREFIX + pub).hexdigest()[:32] != d["key_id"]:
            return "the announced key id is not the hash of the announced public key"
    return ""


def _learn(
    e: dict[str, Any], keys: dict[str, KnownKey], disabled: dict[str, int], ed25519: Any
) -> None:
    d, seq = e["details"], int(e["seq"])
    if e["action"] in ("person.enrol", "person.key.replace"):
        person = e["subject"].removeprefix("person:")
        for old in keys.values():
            if old.person == person and old.replaced_at is None:
                old.replaced_at = seq
        pub = base64.b64decode(d["public_key"])
        keys[d["key_id"]] = KnownKey(person, ed25519.Ed25519PublicKey.from_public_bytes(pub), seq)
    elif e["action"] == "person.disable":
        disabled[e["subject"].removeprefix("person:")] = seq
    elif e["action"] == "person.enable":
        disabled.pop(e["subject"].removeprefix("person:"), None)


# ---------------------------------------------------------------- checkpoints


def checkpoint_body(home_id: str, seq: int, head: str, actor: str, key_id: str) -> dict[str, Any]:
    return {
        "format": 1,
        "home_id": home_id,
        "seq": seq,
        "head": head,
        "time": utcnow(),
        "actor": actor,
        "key_id": key_id,
    }


def sign_checkpoint(body: dict[str, Any], sign: Signer) -> dict[str, Any]:
    sig = sign(CHECKPOINT_PREFIX + canonical(body))
    return {**body, "sig": base64.b64encode(sig).decode()}


def _check_checkpoint(
    cp: dict[str, Any], keys: dict[str, KnownKey], hashes_at: dict[int, str], n: int
) -> tuple[str, int | None]:
    """What is wrong (empty if nothing) and the entry to blame (None: the checkpoint or the log)."""
    from cryptography.exceptions import InvalidSignature

    try:
        body = {k: v for k, v in cp.items() if k != "sig"}
        seq = int(cp["seq"])
        k = keys.get(cp["key_id"])
        if k is None or k.person != cp["actor"]:
            return "the checkpoint is signed by a key this log never enrolled", None
        k.public.verify(_b64_strict(cp["sig"]), CHECKPOINT_PREFIX + canonical(body))
    except (KeyError, ValueError, TypeError, InvalidSignature):
        return "the checkpoint's signature does not verify (the checkpoint file was altered)", None
    if seq > n:
        return (
            f"the log was cut: the checkpoint vouches for {seq} entries but only {n} "
            "remain (newest entries removed)"
        ), None
    if hashes_at.get(seq) != cp["head"]:
        return f"entry {seq} differs from the one the checkpoint vouches for (log rewritten)", seq
    return "", None
