"""A real ``moto_server`` on 127.0.0.1 for the aws-kms backend, and a fault proxy.

``moto_server`` is started by the fixtures and stopped at their end (SIGCONT first,
in case a test stopped it), each bounded in time. :class:`FaultProxy` stands
between the backend and moto and answers armed faults (ThrottlingException,
ExpiredTokenException, ...) as KMS does, in its JSON protocol, so retries and
error messages are tested without waiting for a real throttle.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from custodian.backends.aws_kms import AwsKmsBackend, DecryptCredential
from custodian.service import Service
from tests.conftest import Cast, _make, unlock

MOTO = Path(sys.executable).parent / "moto_server"
REGION = "eu-west-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class MotoServer:
    proc: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def start_moto(env: dict[str, str] | None = None) -> MotoServer:
    port = free_port()
    proc = subprocess.Popen(
        [str(MOTO), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )
    server = MotoServer(proc, port)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto_server exited with status {proc.returncode}")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", "/moto-api/")
            c.getresponse().read()
            c.close()
            return server
        except OSError:
            time.sleep(0.1)
    server.stop()
    raise RuntimeError("moto_server did not start within 30 s")


@pytest.fixture(scope="session")
def moto() -> Iterator[MotoServer]:
    """One moto_server for the session: every home has its own id, so its own aliases."""
    server = start_moto()
    yield server
    server.stop()


@pytest.fixture
def own_moto() -> Iterator[MotoServer]:
    """A moto_server for one test (one it may SIGSTOP)."""
    server = start_moto()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The boto3 chain sees only these: the operator's (encrypt-only) test credential."""
    for k in list(os.environ):
        if k.startswith("AWS_"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing-operator")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing-operator-secret")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def decrypt_credential() -> DecryptCredential:
    """What the quorum-held store would release into a session (moto accepts any key)."""
    return DecryptCredential.from_json(
        json.dumps(
            {
                "Credentials": {
                    "AccessKeyId": "ASIATESTDECRYPT",
                    "SecretAccessKey": "decrypt-role-secret-never-in-a-file",
                    "SessionToken": "decrypt-role-session-token",
                    "Expiration": "2030-01-01T00:00:00Z",
                }
            }
        )
    )


# ---------------------------------------------------------------- the fault proxy


@dataclass
class Fault:
    code: str
    times: int
    op: str | None  # "Encrypt", "ReEncrypt", ... (None: any)
    status: int = 400
    hang: float = 0.0


@dataclass
class FaultProxy:
    upstream: int
    server: ThreadingHTTPServer | None = None
    faults: list[Fault] = field(default_factory=list)
    seen: list[str] = field(default_factory=list)
    answered: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def arm(
        self, code: str, times: int = 1, op: str | None = None, status: int = 400, hang: float = 0
    ) -> None:
        """Answer the next ``times`` calls of ``op`` with KMS error ``code`` (after ``hang``
        seconds of silence, when given: a server that stopped answering)."""
        with self.lock:
            self.faults.append(Fault(code, times, op, status, hang))

    def take(self, op: str) -> Fault | None:
        with self.lock:
            self.seen.append(op)
            for f in self.faults:
                if f.times > 0 and (f.op is None or f.op == op):
                    f.times -= 1
                    self.answered.append(f"{op}:{f.code}")
                    return f
        return None


def start_proxy(upstream: int) -> FaultProxy:
    proxy = FaultProxy(upstream)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a: object) -> None:
            pass

        def do_POST(self) -> None:
            # the client may give up first (its read timeout): what a test wants
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self._post()

        def _post(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            op = self.headers.get("X-Amz-Target", "").rpartition(".")[2]
            f = proxy.take(op)
            if f is not None and f.hang:
                time.sleep(f.hang)
            if f is not None:
                out = json.dumps({"__type": f.code, "message": f"{f.code} (test proxy)"}).encode()
                self.send_response(f.status)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)
                return
            c = http.client.HTTPConnection("127.0.0.1", proxy.upstream, timeout=10)
            headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
            c.request("POST", self.path, body, headers)
            r = c.getresponse()
            data = r.read()
            self.send_response(r.status)
            for k, v in r.getheaders():
                if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            c.close()

    proxy.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    proxy.server.daemon_threads = True
    proxy.server.block_on_close = False  # a hanging answer does not hold the teardown
    threading.Thread(target=proxy.server.serve_forever, daemon=True).start()
    return proxy


@pytest.fixture
def proxy(moto: MotoServer) -> Iterator[FaultProxy]:
    p = start_proxy(moto.port)
    yield p
    assert p.server is not None
    p.server.shutdown()
    p.server.server_close()


# ---------------------------------------------------------------- homes on aws-kms


def kms_home(home: Path, endpoint: str, **options: object) -> tuple[Service, Cast]:
    """A test home with ``[backends.aws-kms]`` at ``endpoint`` and a KEK ``offsite`` on it."""
    from tests.conftest import Clock, next_code

    svc, cast = _make(home, "x25519")
    svc.clock = Clock()
    alice = unlock(svc, cast.alice)
    # generous timeouts while the home is made (a loaded machine makes moto slow); the
    # tests of a hung server shorten them with short_timeouts() just before they hang it
    opts = {"region": REGION, "endpoint_url": endpoint, "connect_timeout": 5,
            "read_timeout": 20, "backoff_base": 0.01, "backoff_cap": 0.05, **options}  # fmt: skip
    svc.keys.configure_backend("aws-kms", opts, by=alice)
    svc.keys.create(
        "offsite", by=alice, backend="aws-kms", purpose="off-site copies",
        code=next_code(svc, cast.alice),
    )  # fmt: skip
    return svc, cast


@pytest.fixture
def kms(moto: MotoServer, home: Path) -> Iterator[tuple[Service, Cast]]:
    svc, cast = kms_home(home, moto.url)
    yield svc, cast
    svc.close()


def short_timeouts(be: AwsKmsBackend, seconds: float = 1.0) -> None:
    """From now on each call of ``be`` gives up after ``seconds`` (connect and read)."""
    import dataclasses

    be.settings = dataclasses.replace(be.settings, connect_timeout=seconds, read_timeout=seconds)
    be._clients.clear()


def backend(svc: Service) -> AwsKmsBackend:
    be = svc.keys.backend("aws-kms")
    assert isinstance(be, AwsKmsBackend)
    return be
