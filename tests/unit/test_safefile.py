"""Files born invisible (custodian.safefile), and SIGKILL at the exact moments between
writing, publishing and recording a file: the next run of the same kind sweeps or
finishes what the killed one left (issue 12). The random-moment kills of whole
commands are in tests/integration/test_crash_safety.py."""

from __future__ import annotations

import io
import os
import signal
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from custodian import approvals as A
from custodian import safefile
from custodian.errors import ConflictError
from custodian.service import Service
from custodian.service.context import HomeContext
from tests.conftest import Cast, Clock, approved_session, unlock


@pytest.fixture(params=[True, False], ids=["o_tmpfile", "private_name"])
def tmpfile(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[bool]:
    monkeypatch.setattr(safefile, "USE_O_TMPFILE", request.param)
    yield request.param


def test_a_file_has_no_name_until_it_is_complete(tmp_path: Path, tmpfile: bool) -> None:
    dst = tmp_path / "out"
    hf = safefile.open_new_file(dst, False)
    hf.file.write(b"plain" * 1000)
    names = os.listdir(tmp_path)
    if tmpfile:
        assert names == []  # O_TMPFILE: nothing to find, nothing a kill leaves
    else:
        (name,) = names
        assert safefile.is_private_name(name) and name.startswith(".out.")
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o600
        assert safefile.leftovers(tmp_path) == []  # a live writer's file is not swept
    hf.keep()
    hf.publish(False)
    (private,) = [n for n in os.listdir(tmp_path) if n != "out"]
    assert safefile.is_private_name(private)  # published, not yet recorded
    hf.done()
    assert os.listdir(tmp_path) == ["out"]
    assert dst.read_bytes() == b"plain" * 1000
    assert stat.S_IMODE(dst.stat().st_mode) == 0o600


def test_write_new_file_never_replaces_and_leaves_nothing_on_error(
    tmp_path: Path, tmpfile: bool
) -> None:
    dst = tmp_path / "out"
    dst.write_bytes(b"keep me")
    with pytest.raises(ConflictError, match="already exists"):
        safefile.write_new_file(dst, False, lambda f: f.write(b"new"))
    hf = safefile.open_new_file(tmp_path / "late", False)
    hf.file.write(b"x")
    hf.keep()
    (tmp_path / "late").write_bytes(b"appeared meanwhile")
    with pytest.raises(ConflictError, match="appeared while writing"):
        hf.publish(False)
    hf.discard()
    assert (tmp_path / "late").read_bytes() == b"appeared meanwhile"
    assert sorted(os.listdir(tmp_path)) == ["late", "out"]


def _killed_in_child(fn: Callable[[], None]) -> None:
    """Run ``fn`` in a forked child that must end by SIGKILL (it kills itself)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            fn()
        finally:
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, status


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_dead_writers_file_is_swept_and_a_live_ones_is_not(tmp_path: Path, tmpfile: bool) -> None:
    def write_then_die() -> None:
        hf = safefile.open_new_file(tmp_path / "out", False)
        hf.file.write(b"half a plaintext")
        if tmpfile:
            hf.keep()  # complete, kept under its private name, then killed
        _die()

    _killed_in_child(write_then_die)
    (name,) = os.listdir(tmp_path)
    assert safefile.is_private_name(name)
    live = safefile.open_new_file(tmp_path / "other", False)  # a live writer meanwhile
    live.file.write(b"x")
    live.keep()
    assert safefile.sweep_plain(tmp_path) == 1
    assert [n for n in os.listdir(tmp_path) if n != name] == os.listdir(tmp_path)
    assert name not in os.listdir(tmp_path) and len(os.listdir(tmp_path)) == 1
    live.publish(False)
    live.done()
    assert os.listdir(tmp_path) == ["other"]


def test_files_of_custodian_0_1_0_are_swept_once_their_process_is_gone(tmp_path: Path) -> None:
    pid = os.fork()
    if pid == 0:  # pragma: no cover
        os._exit(0)
    os.waitpid(pid, 0)
    dead = tmp_path / f".out.{pid}.0123abcd.partial"
    dead.write_bytes(b"prefix of a plaintext")
    alive = tmp_path / f".out.{os.getpid()}.0123abcd.partial"
    alive.write_bytes(b"someone still writing")
    assert safefile.sweep_plain(tmp_path) == 1
    assert os.listdir(tmp_path) == [alive.name]


# ---------------------------------------------------------------- restore run, killed


def _with(obj: Any, name: str, wrap: Callable[..., Any]) -> None:
    real = getattr(obj, name)
    setattr(obj, name, lambda *a, **kw: wrap(real, *a, **kw))


def test_a_restore_killed_between_publishing_and_recording_is_done_again(
    svc: Service, cast: Cast, tmp_path: Path, tmpfile: bool
) -> None:
    svc.clock = Clock()
    bot = unlock(svc, cast.bot)
    b = svc.backups.encrypt(io.BytesIO(b"rows\n" * 10_000), tmp_path / "a.cbk", by=bot, label="db")
    target = tmp_path / "restore"
    target.mkdir()
    s = approved_session(svc, cast, [b.id], target)
    oscar = unlock(svc, cast.oscar)

    def run_until_recorded() -> None:
        _with(A, "add_result", lambda real, *a, **kw: _die())
        with Service.open(svc.home.path) as child:
            child.restores.run(s.request, by=unlock(child, cast.oscar))

    _killed_in_child(run_until_recorded)
    names = sorted(os.listdir(target))
    assert names[-1] == "db" and safefile.is_private_name(names[0]) and len(names) == 2
    assert (target / "db").read_bytes() == b"rows\n" * 10_000  # complete and verified
    report = svc.restores.run(s.request, by=oscar)  # not recorded, so restored again
    assert [x.outcome for x in report.results] == ["ok"], report.summary()
    assert os.listdir(target) == ["db"]
    assert (target / "db").read_bytes() == b"rows\n" * 10_000
    assert svc.audit.verify().ok


def test_a_restore_killed_after_recording_keeps_its_file(
    svc: Service, cast: Cast, tmp_path: Path, tmpfile: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc.clock = Clock()
    bot = unlock(svc, cast.bot)
    a = svc.backups.encrypt(io.BytesIO(b"a" * 3000), tmp_path / "a.cbk", by=bot, label="a")
    b = svc.backups.encrypt(io.BytesIO(b"b" * 3000), tmp_path / "b.cbk", by=bot, label="b")
    target = tmp_path / "restore"
    target.mkdir()
    s = approved_session(svc, cast, [a.id, b.id], target)

    def run_until_first_is_recorded() -> None:
        _with(safefile.HiddenFile, "done", lambda real, *a, **kw: _die())
        with Service.open(svc.home.path) as child:
            child.restores.run(s.request, by=unlock(child, cast.oscar))

    _killed_in_child(run_until_first_is_recorded)
    assert len(os.listdir(target)) == 2  # "a" and its private name
    report = svc.restores.run(s.request, by=unlock(svc, cast.oscar))
    assert [x.backup for x in report.results] == [b.id] and report.skipped == [a.id]
    assert sorted(os.listdir(target)) == ["a", "b"]
    assert (target / "a").read_bytes() == b"a" * 3000


# ---------------------------------------------------------------- backup encrypt, killed


def _encrypt_in_child(svc: Service, cast: Cast, dst: Path, **kw: Any) -> Callable[[], None]:
    def go() -> None:
        with Service.open(svc.home.path) as child:
            child.backups.encrypt(
                io.BytesIO(b"dump\n" * 50_000), dst, by=unlock(child, cast.bot), **kw
            )

    return go


def _agree(svc: Service) -> None:
    entries = list(svc.log.entries())
    aborted = {e["details"].get("aborts") for e in entries if e["outcome"] == "failed"}
    made = {
        e["subject"].removeprefix("backup:")
        for e in entries
        if e["action"] == "backup.encrypt" and e["outcome"] == "ok" and e["seq"] not in aborted
    }
    assert made == {b.id for b in svc.backups.list()}
    res = svc.audit.verify()
    assert res.ok, res.summary()


def test_encrypt_killed_before_its_commit_is_undone_by_the_next_run(
    svc: Service, cast: Cast, tmp_path: Path, tmpfile: bool
) -> None:
    """Killed after the container took its name and the entry was written, before the
    commit: the next encrypt in the directory removes the container and cancels the
    entry, so the log and the catalog agree."""
    out = tmp_path / "out"
    out.mkdir()

    def die_after_the_entry(real: Any, self: HomeContext, *a: Any, **kw: Any) -> Any:
        entry = real(self, *a, **kw)
        if entry["action"] == "backup.encrypt":
            _die()
        return entry

    def go() -> None:
        _with(HomeContext, "record", die_after_the_entry)
        _encrypt_in_child(svc, cast, out / "a.cbk")()

    _killed_in_child(go)
    assert len(os.listdir(out)) == 2  # a.cbk and its private name, one file
    assert svc.backups.list() == []
    svc.backups.encrypt(io.BytesIO(b"next"), out / "b.cbk", by=unlock(svc, cast.bot))
    assert os.listdir(out) == ["b.cbk"]
    cancel = [e for e in svc.log.entries() if e["outcome"] == "failed"]
    assert len(cancel) == 1 and cancel[0]["actor"] == "bot"
    _agree(svc)


def test_encrypt_killed_after_its_commit_keeps_the_backup(
    svc: Service, cast: Cast, tmp_path: Path, tmpfile: bool
) -> None:
    out = tmp_path / "out"
    out.mkdir()

    def go() -> None:
        _with(safefile.HiddenFile, "done", lambda real, *a, **kw: _die())
        _encrypt_in_child(svc, cast, out / "a.cbk")()

    _killed_in_child(go)
    (made,) = svc.backups.list()
    svc.backups.encrypt(io.BytesIO(b"next"), out / "b.cbk", by=unlock(svc, cast.bot))
    assert sorted(os.listdir(out)) == ["a.cbk", "b.cbk"]
    assert Path(made.location).stat().st_size == made.container_size
    _agree(svc)


def test_a_forced_encrypt_killed_between_commit_and_rename_is_finished(
    svc: Service, cast: Cast, tmp_path: Path, tmpfile: bool
) -> None:
    """--force replaces the old file only after the commit; killed right then, the next
    run puts the recorded container in place."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.cbk").write_bytes(b"old")

    def go() -> None:
        def publish(real: Any, self: safefile.HiddenFile, replace: bool) -> None:
            if replace:
                _die()
            real(self, replace)

        _with(safefile.HiddenFile, "publish", publish)
        _encrypt_in_child(svc, cast, out / "a.cbk", force=True)()

    _killed_in_child(go)
    assert (out / "a.cbk").read_bytes() == b"old"
    (made,) = svc.backups.list()
    svc.backups.encrypt(io.BytesIO(b"next"), out / "b.cbk", by=unlock(svc, cast.bot))
    assert sorted(os.listdir(out)) == ["a.cbk", "b.cbk"]
    assert (out / "a.cbk").stat().st_size == made.container_size
    _agree(svc)
