"""Fixtures: real servers on free loopback ports, started and stopped by the tests."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import pytest
import uvicorn

from promptcast.server.app import create_app
from promptcast.server.protocol import HttpProtocol
from promptcast.settings import Settings
from promptcast.wire import scan

from .forward_proxy import ForwardProxy
from .upstream_double import UpstreamDouble

ROOT = Path(__file__).resolve().parent.parent


# Hypothesis's per-example deadline is a timed assertion: on a shared machine it
# fails tests for being slow, not wrong. Speed belongs to bench/.
hypothesis.settings.register_profile("promptcast", deadline=None)
hypothesis.settings.load_profile("promptcast")

@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session", autouse=True)
def _data_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The library's default SQLite file goes under a temporary data directory, never $HOME."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_DATA_HOME", str(tmp_path_factory.mktemp("data-home")))
        yield


@pytest.fixture(scope="module", params=["c", "python"])
def both_scans(request: pytest.FixtureRequest) -> Iterator[str]:
    """A module's tests on the C scans, then again on their Python reference (scan.py)."""
    with pytest.MonkeyPatch.context() as patch:
        if request.param == "python":
            for name in ("data_lines", "frame", "count", "contains", "find_line"):
                patch.setattr(scan, name, getattr(scan, f"py_{name}"))
        yield request.param


@pytest.fixture
def upstream() -> Iterator[UpstreamDouble]:
    """A scripted OpenAI-compatible server on a free loopback port."""
    double = UpstreamDouble().start()
    yield double
    double.stop()


def models_file(tmp_path: Path, upstream: UpstreamDouble, **extra: dict[str, Any]) -> Path:
    """A models TOML with `scripted` (no key) and `keyed` (key in SCRIPTED_KEY) on the double."""
    path = tmp_path / "models.toml"
    text = (
        '[models."scripted"]\nprovider = "openai"\n'
        f'base_url = "{upstream.base_url}"\nmodel = "scripted-upstream"\n\n'
        '[models."keyed"]\nprovider = "openai"\n'
        f'base_url = "{upstream.base_url}"\napi_key_env = "SCRIPTED_KEY"\n'
    )
    for name, entry in extra.items():
        text += f'\n[models."{name}"]\n'
        for key, value in entry.items():
            text += f"{key} = {value!r}\n".replace("'", '"')
    path.write_text(text, encoding="utf-8")
    return path


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def free_port() -> int:
    with free_socket() as sock:
        port: int = sock.getsockname()[1]
        return port


@dataclass
class RunningServer:
    url: str
    settings: Settings
    _server: uvicorn.Server
    _thread: threading.Thread
    app: Any = field(default=None)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)


def start_server(settings: Settings,
                 setup: Callable[[Any], Any] | None = None) -> RunningServer:
    """promptcast under uvicorn (uvloop + httptools, as `promptcast serve`) in a thread.

    `setup` takes the app before it starts and returns what to serve (the app,
    or something wrapping it).
    """
    sock = free_socket()
    app = create_app(settings)
    served = app if setup is None else setup(app)
    config = uvicorn.Config(served, loop="uvloop", http=HttpProtocol, log_level="warning",
                            timeout_graceful_shutdown=2, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True,
                              name="promptcast-server")
    thread.start()
    port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    deadline = 200
    while not server.started and deadline and thread.is_alive():
        threading.Event().wait(0.05)
        deadline -= 1
    if not server.started:
        raise RuntimeError("promptcast did not start")
    return RunningServer(url, settings, server, thread, app)


@pytest.fixture
def serve(tmp_path: Path, upstream: UpstreamDouble) -> Iterator[Callable[..., RunningServer]]:
    """Start promptcast with the double's models and any setting overridden."""
    servers: list[RunningServer] = []

    def _serve(environ: dict[str, str] | None = None,
               setup: Callable[[Any], Any] | None = None, **overrides: Any) -> RunningServer:
        env = {"PROMPTCAST_MODELS_FILE": str(models_file(tmp_path, upstream)),
               "PROMPTCAST_DEFAULT_MODEL": "scripted", **(environ or {})}
        server = start_server(Settings.from_env(env, **overrides), setup)
        servers.append(server)
        return server

    yield _serve
    for server in servers:
        server.stop()


@pytest.fixture
def server(serve: Callable[..., RunningServer]) -> RunningServer:
    """promptcast with default limits, its default model on the double."""
    return serve()


# A proxy set on the developer's machine must not carry the tests' loopback requests.
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@dataclass
class Process:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def spawn(args: list[str], env: dict[str, str], log: Path, port: int) -> Process:
    """`python -m promptcast serve ...` as its own process; waits until it answers."""
    full_env = {k: v for k, v in os.environ.items()
                 if not k.startswith("PROMPTCAST_") and k.lower() not in PROXY_VARIABLES}
    full_env.update(env)
    with log.open("wb") as handle:
        proc = subprocess.Popen(
            [sys.executable, "-m", "promptcast", "serve", "--port", str(port), *args],
            env=full_env, stdout=handle, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        if proc.poll() is not None:
            raise RuntimeError(f"promptcast exited: {log.read_text(errors='replace')}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return Process(url, proc, log)
        except httpx.HTTPError:
            pass
        threading.Event().wait(0.05)
    proc.kill()
    raise RuntimeError(f"promptcast did not start: {log.read_text(errors='replace')}")


@pytest.fixture
def processes() -> Iterator[Callable[..., Process]]:
    """Start real promptcast processes; all are stopped at the end of the test."""
    started: list[Process] = []

    def _start(args: list[str], env: dict[str, str], log: Path) -> Process:
        process = spawn(args, env, log, free_port())
        started.append(process)
        return process

    yield _start
    for process in started:
        process.proc.terminate()
        try:
            process.proc.wait(10)
        except subprocess.TimeoutExpired:
            process.proc.kill()
            process.proc.wait()


@dataclass
class RedisServer:
    port: int
    proc: subprocess.Popen[bytes]
    workdir: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        """(Re)start redis-server on its port; returns once it answers PING."""
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.workdir),
             "--protected-mode", "yes", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        for _ in range(200):
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError("redis-server exited at start")
            threading.Event().wait(0.02)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A real redis-server on a free loopback port, for this test only."""
    if not shutil.which("redis-server"):
        pytest.fail("redis-server is not installed: run `make test`, which installs it")
    server = RedisServer(free_port(), None, tmp_path).start()  # type: ignore[arg-type]
    yield server
    server.stop()


@pytest.fixture
def replicas(
    tmp_path: Path, upstream: UpstreamDouble, redis_server: RedisServer,
    processes: Callable[..., Process],
) -> Callable[..., list[Process]]:
    """Start `n` promptcast processes on the double, sharing the test's Redis."""
    def start(n: int = 2, **env: str) -> list[Process]:
        base = {
            "PROMPTCAST_MODELS_FILE": str(models_file(tmp_path, upstream)),
            "PROMPTCAST_DEFAULT_MODEL": "scripted",
            "PROMPTCAST_REDIS_URL": redis_server.url,
            "PROMPTCAST_LEASE_TTL": "1.5",
            **env,
        }
        return [processes([], base, tmp_path / f"replica-{i}.log") for i in range(n)]

    return start


@pytest.fixture
def forward_proxy() -> Iterator[ForwardProxy]:
    """A real HTTP forward proxy on a free loopback port (tests/forward_proxy.py)."""
    proxy = ForwardProxy().start()
    yield proxy
    proxy.stop()


# ---------------------------------------------------------------- PostgreSQL


def _pg_bin(name: str) -> str:
    """A PostgreSQL server program: on PATH, or in Debian's /usr/lib/postgresql/<version>/bin."""
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"),
                      key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0)
    if not versions:
        pytest.fail(f"PostgreSQL's {name} is not installed: run `make test`, which installs it")
    return str(versions[-1])


@dataclass
class PostgresServer:
    """A throwaway PostgreSQL cluster in a temporary directory, on a free loopback port."""

    port: int
    workdir: Path
    _as_postgres: list[str] = field(default_factory=list)

    def _run(self, *argv: str) -> None:
        subprocess.run([*self._as_postgres, *argv], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, timeout=120)

    def start(self) -> PostgresServer:
        data = self.workdir / "data"
        if not data.exists():
            # trust: a loopback-only cluster that lives for one test session.
            self._run(_pg_bin("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                      "-E", "UTF8", "--locale=C.UTF-8")
        options = (f"-p {self.port} -k {self.workdir} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c full_page_writes=off "
                   "-c max_connections=200")
        self._run(_pg_bin("pg_ctl"), "-D", str(data), "-l", str(self.workdir / "log"),
                  "-o", options, "-w", "-t", "60", "start")
        return self

    def stop(self) -> None:
        """Stop the server at once (it may come back with `start`)."""
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run(_pg_bin("pg_ctl"), "-D", str(self.workdir / "data"), "-m", "immediate",
                      "-w", "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new empty database; its URL."""
        name = f"t_{secrets.token_hex(6)}"
        self._run(_pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U",
                  "postgres", name)
        return self.url(name)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL cluster for the session (initdb takes seconds); each test makes a database."""
    workdir = Path(tempfile.mkdtemp(prefix="promptcast-pg-"))
    as_postgres: list[str] = []
    if os.geteuid() == 0:
        # initdb refuses to run as root: the cluster belongs to the `postgres` user.
        shutil.chown(workdir, "postgres", "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    server = PostgresServer(free_port(), workdir, as_postgres).start()
    yield server
    server.stop()
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A fresh, empty PostgreSQL database of the session's cluster."""
    return postgres_server.create_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A test's library database: a real SQLite file, then a real PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'library.db'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.create_database()
