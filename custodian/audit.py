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
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from custodian.catalog import utcnow
from custodian.errors import CustodianError

if TYPE_CHECKING:
    from custodian.ledger import LogState

HASH_PREFIX = b"custodian audit v1\n"
SIG_PREFIX = b"custodian audit sig v1\0"
CHECKPOINT_PREFIX = b"custodian audit checkpoint v1\0"
GENESIS = "0" * 64
SEGMENT_ENTRIES = 10_000
KEY_ANNOUNCING = ("home.init", "person.enrol", "person.key.replace")
SEGMENT_RE = re.compile(r"segment-([0-9]{6,})\.jsonl")


def segment_name(n: int) -> str:
    """The file name of segment ``n`` (1, 2, ...)."""
    return f"segment-{n:06d}.jsonl"


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
        self._unsynced: set[Path] = set()  # segments appended to with sync=False

    # ------------------------------------------------------------ files

    def segments(self) -> list[Path]:
        """The segment files in order: exactly ``segment-`` + the number in at least 6
        digits (no more leading zeros) + ``.jsonl``; every other file is not the log's."""
        if not self.dir.is_dir():
            return []
        found = []
        for p in self.dir.iterdir():
            m = SEGMENT_RE.fullmatch(p.name)
            if m and segment_name(int(m.group(1))) == p.name and int(m.group(1)) >= 1:
                found.append((int(m.group(1)), p))
        return [p for _, p in sorted(found)]

    def _segment_path(self, n: int) -> Path:
        return self.dir / segment_name(n)

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
        sync: bool = True,
    ) -> dict[str, Any]:
        """Write one signed entry and fsync it. Raises AuditError if it cannot.

        With ``sync=False`` the fsync is left to :meth:`sync` (a group commit: the
        caller fsyncs once for several entries, and commits none of their actions
        before it has)."""
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
                fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    size = os.fstat(fd).st_size
                    if size and os.pread(fd, 1, size - 1) != b"\n":
                        # The newest line has no line end (an editor, a copy): end it in
                        # the same write, so that two entries never share a line.
                        line = b"\n" + line
                    try:
                        if os.write(fd, line) != len(line):
                            raise OSError(28, "short write (disk full?)")
                        if sync:
                            os.fsync(fd)
                        else:
                            self._unsynced.add(path)
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

    def sync(self) -> None:
        """Make every entry appended with ``sync=False`` durable. Raises AuditError."""
        for path in sorted(self._unsynced):
            try:
                fd = os.open(path, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as e:
                raise _write_error(self.dir, e) from None
        self._unsynced.clear()

    # ------------------------------------------------------------ read

    def entries(
        self,
        decode: Callable[[str], Any] | None = None,
        before_line: Callable[[], None] | None = None,
        on_segment: Callable[[Path], None] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every entry, oldest first; a line that is not JSON as ``{"_malformed": where}``.

        ``decode`` replaces ``json.loads`` (given the line decoded as json.loads
        decodes bytes); ``before_line`` is called before each line is decoded.
        """
        for seg in self.segments():
            if on_segment is not None:
                on_segment(seg)
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


# ---------------------------------------------------------------- recorded settings


@dataclass
class Recorded:
    """What the log records about the home's settings, read without signatures: the
    check at open (``custodian kek list`` loads no cryptography). Each decision checks
    them again with signatures (:class:`custodian.ledger.Ledger`)."""

    home_id: str = ""
    home_key_id: str = ""
    demo: bool = False
    policy: dict[str, int] = field(default_factory=dict)  # the settings entries changed
    policy_at: dict[str, int] = field(default_factory=dict)
    readable: bool = True  # False: a line did not parse; verify names it


_SETTING_NEEDLES = (b'"action":"policy.set"', b'"policy":{', b'"aborts":')


def recorded_settings(log: AuditLog) -> Recorded:
    """home.init's home id, key id, demo flag and policy, then each policy.set and each
    approval that changed the policy (``details.policy``), in order; an entry a later
    compensating entry cancels does not count. Only lines holding one of a few byte
    strings are decoded (a byte search, not a loop over the lines)."""
    rec = Recorded()
    found: dict[int, dict[str, Any]] = {}
    try:
        for n, seg in enumerate(log.segments()):
            data = seg.read_bytes()
            ends = [data.find(b"\n")] if n == 0 else []  # entry 1 is the first line
            for needle in _SETTING_NEEDLES:
                i = data.find(needle)
                while i >= 0:
                    end = data.find(b"\n", i)
                    ends.append(len(data) if end < 0 else end)
                    i = data.find(needle, len(data) if end < 0 else end)
            for end in set(ends):
                end = len(data) if end < 0 else end
                line = data[data.rfind(b"\n", 0, end) + 1 : end]
                try:
                    e = json.loads(line)
                except ValueError:
                    rec.readable = False
                    continue
                if isinstance(e, dict) and type(e.get("seq")) is int:
                    found[e["seq"]] = e
    except OSError:
        rec.readable = False
    changes: list[tuple[int, dict[str, Any]]] = []
    cancelled: set[int] = set()
    for seq in sorted(found):
        e = found[seq]
        d, action = e.get("details"), e.get("action")
        if not isinstance(d, dict):
            continue
        if e.get("outcome") == "failed" and type(d.get("aborts")) is int:
            cancelled.add(d["aborts"])
        elif e.get("outcome") != "ok":
            continue
        elif action == "home.init" and seq == 1:
            rec.home_id = str(d.get("home_id", ""))
            rec.home_key_id = str(d.get("key_id", ""))
            rec.demo = d.get("demo", False) is True
            if isinstance(d.get("policy"), dict):
                changes.append((1, d["policy"]))
        elif action == "policy.set" and isinstance(d.get("setting"), str):
            changes.append((seq, {d["setting"]: d.get("to")}))
        elif action == "request.approve" and isinstance(d.get("policy"), dict):
            changes.append((seq, d["policy"]))
    for seq, values in changes:
        if seq not in cancelled:
            for name, value in values.items():
                rec.policy[str(name)] = value
                rec.policy_at[str(name)] = seq
    return rec


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


def _entries_for_verify(log: AuditLog, where: list[str]) -> Iterator[tuple[Any, bool]]:
    """What ``log.entries()`` yields, each with whether its line held a float; ``where[0]``
    is the name of the segment the entry is in."""
    floats: list[str] = []

    def note_float(text: str) -> float:
        floats.append(text)
        return float(text)

    decoder = json.JSONDecoder(parse_float=note_float, parse_constant=note_float)
    for e in log.entries(decoder.decode, floats.clear, lambda p: where.__setitem__(0, p.name)):
        yield e, bool(floats)


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
                f"audit log verified: {self.entries:,} entries{ab}, chain and signatures "
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
    """Check the whole log offline. Names the first bad entry and why.

    Each entry: well-formed, in sequence, in its segment, linked to the one before,
    hashed and signed by a key the log announced to its actor and still in force, and
    (outcome ok) allowed by the rules of :class:`custodian.ledger.LogState`: who may
    announce, replace, disable and enable which key, change KEK versions and the
    policy, and decide a request (docs/audit-format.md, section 7).
    """
    import copy

    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from custodian.ledger import LogState

    st = LogState()
    pubs: dict[str, Any] = {}
    try:
        total = log.count()
    except AuditError:
        total = 0  # a damaged newest line: reported below, where the entries are read
    prev, expect_seq, last_hash = GENESIS, 1, GENESIS
    hashes_at: dict[int, str] = {}
    why_cp = _checkpoint_types(checkpoint) if checkpoint is not None else ""
    if why_cp:
        return VerifyResult(False, 0, GENESIS, None, why_cp)
    want_seq = int(checkpoint["seq"]) if checkpoint else None
    # Entries that a later compensating entry cancels (section "Compensating entries"):
    # known before the pass, so that a cancelled entry never takes effect; each
    # compensating entry is then checked where it stands.
    cancelled_by = _compensated(log)
    voided: dict[int, tuple[str, str, str, str]] = {}  # seq -> action, subject, hash, key
    where: list[str] = [""]  # the segment being read (for messages)

    def bad(seq: int | None, why: str) -> VerifyResult:
        return VerifyResult(False, expect_seq - 1, last_hash, seq, why, keys=len(st.keys))

    for e, has_float in _entries_for_verify(log, where):
        if cancelled is not None and cancelled():
            return VerifyResult(False, expect_seq - 1, last_hash, None, "verification cancelled")
        if "_malformed" in e:
            return bad(expect_seq, f"not valid JSON ({e['_malformed']})")
        try:
            wrong = _entry_types(e)
            if wrong:
                raise TypeError(wrong)
            seq = e["seq"]
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
            why, pub = st.signer(e)
            if why or pub is None:
                return bad(seq, why)
            key = pubs.get(kid)
            if key is None:
                key = pubs[kid] = ed25519.Ed25519PublicKey.from_public_bytes(pub)
            try:
                key.verify(_b64_strict(e["sig"]), SIG_PREFIX + bytes.fromhex(e["hash"]))
            except (InvalidSignature, ValueError):
                return bad(seq, "signature does not verify")
            if e["outcome"] == "ok" and seq in cancelled_by:
                # it did not happen: its rules are checked, nothing is learnt from it
                why = copy.deepcopy(st).apply(e)
                st.last_seq = seq
                voided[seq] = (e["action"], e["subject"], e["hash"], kid)
            else:
                why = st.apply(e)
            if why:
                return bad(seq, why)
            if e["outcome"] == "failed" and "aborts" in e["details"]:
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
    res = VerifyResult(True, n, last_hash, keys=len(st.keys), aborted=len(voided))
    if checkpoint is not None:
        problem, at = _check_checkpoint(checkpoint, st, hashes_at, n)
        if problem:
            return VerifyResult(False, n, last_hash, at, problem, keys=len(st.keys))
        res.checkpoint = f"checkpoint at entry {want_seq} by {checkpoint['actor']} holds"
    return res


# Members of an entry and their JSON types (docs/audit-format.md section 2).
ENTRY_TYPES: dict[str, type | tuple[type, ...]] = {
    "seq": int,
    "time": str,
    "actor": str,
    "action": str,
    "subject": str,
    "outcome": str,
    "details": dict,
    "prev": str,
    "key_id": str,
    "hash": str,
    "sig": str,
}


def _entry_types(e: dict[str, Any]) -> str:
    """Which member is missing or of the wrong type ('' when none)."""
    for name, kind in ENTRY_TYPES.items():
        if name not in e:
            return f"no {name}"
        v = e[name]
        if isinstance(v, bool) or not isinstance(v, kind):
            return f"{name} is {type(v).__name__}, not {getattr(kind, '__name__', kind)}"
    return ""


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


def _checkpoint_types(cp: Any) -> str:
    """Why a checkpoint is not one at all, by its members' types ('' when it is one)."""
    if not isinstance(cp, dict):
        return "the checkpoint file is not a custodian audit checkpoint (not a JSON object)"
    missing = sorted(CHECKPOINT_FIELDS - set(cp))
    if missing:
        return f"the checkpoint file is not a custodian audit checkpoint (no {', '.join(missing)})"
    for name, kind in CHECKPOINT_TYPES.items():
        v = cp[name]
        if isinstance(v, bool) or not isinstance(v, kind):
            return (
                f"the checkpoint's {name} is a JSON {_json_type(v)}, not "
                f"{'an' if kind is int else 'a'} {_json_type(kind())}; the file is not a "
                "custodian audit checkpoint"
            )
    return ""


# A checkpoint's members and their JSON types (docs/audit-format.md section 9).
CHECKPOINT_TYPES: dict[str, type] = {
    "format": int,
    "home_id": str,
    "seq": int,
    "head": str,
    "time": str,
    "actor": str,
    "key_id": str,
    "sig": str,
}


def _json_type(v: Any) -> str:
    if isinstance(v, bool):
        return "boolean"
    return {int: "integer", float: "number", str: "string", list: "array", dict: "object"}.get(
        type(v), "null" if v is None else type(v).__name__
    )


def _check_checkpoint(
    cp: dict[str, Any], st: LogState, hashes_at: dict[int, str], n: int
) -> tuple[str, int | None]:
    """What is wrong (empty if nothing) and the entry to blame (None: the checkpoint or the log)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import ed25519

    try:
        body = {k: v for k, v in cp.items() if k != "sig"}
        seq = int(cp["seq"])
        k = st.keys.get(cp["key_id"])
        if k is None or k.person != cp["actor"]:
            return "the checkpoint is signed by a key this log never enrolled", None
        pub = ed25519.Ed25519PublicKey.from_public_bytes(k.public)
        pub.verify(_b64_strict(cp["sig"]), CHECKPOINT_PREFIX + canonical(body))
    except (KeyError, ValueError, TypeError, InvalidSignature):
        return "the checkpoint's signature does not verify (the checkpoint file was altered)", None
    if cp["format"] != 1:
        return f"the checkpoint has format {cp['format']}; this custodian reads format 1", None
    if seq < 1:
        return f"the checkpoint vouches for {seq} entries; a checkpoint vouches for 1 or more", None
    if cp["home_id"] != st.home_id:
        return (
            f"the checkpoint is of another home ({cp['home_id'][:40]}), not of this log's "
            f"({st.home_id})"
        ), None
    if seq > n:
        return (
            f"the log was cut: the checkpoint vouches for {seq} entries but only {n} "
            "remain (newest entries removed)"
        ), None
    if hashes_at.get(seq) != cp["head"]:
        return f"entry {seq} differs from the one the checkpoint vouches for (log rewritten)", seq
    return "", None
