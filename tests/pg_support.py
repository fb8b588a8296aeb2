"""A throwaway PostgreSQL cluster for the tests: a real server on a loopback port, in a temporary folder.

Skipped, saying why, where the PostgreSQL server programs or the psycopg driver are not installed (in CI, which
installs them, that is a failure). A test may stop the server and start it again, as an operator's outage would.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.serve_support import free_port


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name) or sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found if isinstance(found, str) else (found[-1] if found else None)


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _unavailable(reason: str) -> None:
    """Skip where PostgreSQL is not installed; in CI, which installs it (.ci/run), that is a failure."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; .ci/run should have installed it")
    pytest.skip(reason)


class Postgres:
    """One cluster: `url(db)` for a database made with `create`, `stop()` and `start()` for an outage."""

    def __init__(self) -> None:
        pytest.importorskip("psycopg", reason="the psycopg driver is not installed (pip install 'gmtrouter[serve]')")
        self.initdb, self.server = _pg_bin("initdb"), _pg_bin("postgres")
        if not self.initdb or not self.server:
            _unavailable("PostgreSQL server programs (initdb, postgres) are not installed")
        self.as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_postgres and (shutil.which("runuser") is None or not _has_user("postgres")):
            _unavailable("running as root needs the 'postgres' system user and runuser to start PostgreSQL")
        self.folder = tempfile.mkdtemp(prefix="gmtrouter-pg-")
        os.chmod(self.folder, 0o755)
        if self.as_postgres:
            shutil.chown(self.folder, "postgres", "postgres")
        self.data = os.path.join(self.folder, "data")
        subprocess.run(
            [*self.as_postgres, self.initdb, "-D", self.data, "-A", "trust", "-U", "gmt", "--no-sync"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.start()

    def url(self, db: str) -> str:
        return f"postgresql+psycopg://gmt@127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        """Start the server (again) on the same port and data, and wait until it takes connections."""
        import psycopg

        options = ["-D", self.data, "-p", str(self.port), "-k", self.folder, "-c", "listen_addresses=127.0.0.1"]
        self.process = subprocess.Popen(
            [*self.as_postgres, self.server, *options], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                psycopg.connect(f"postgresql://gmt@127.0.0.1:{self.port}/postgres").close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.process.kill()
                    pytest.fail("the PostgreSQL server did not start")
                time.sleep(0.2)

    def stop(self) -> None:
        """Stop the server with a fast shutdown (SIGINT: open connections are cut, as in an outage; SIGTERM would
        wait for every client to leave), sent to the postmaster itself, not to `runuser` in front of it."""
        pid_file = Path(self.data) / "postmaster.pid"
        if pid_file.is_file():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid_file.read_text().split()[0]), signal.SIGINT)
        if self.process is not None:
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        deadline = time.monotonic() + 30
        while pid_file.exists() and time.monotonic() < deadline:  # the postmaster removes it when it is gone
            time.sleep(0.1)
        self.process = None

    def create(self, name: str) -> str:
        """A new, empty database; its SQLAlchemy URL."""
        import psycopg

        with psycopg.connect(f"postgresql://gmt@127.0.0.1:{self.port}/postgres", autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


@contextlib.contextmanager
def postgres_cluster() -> Iterator[Postgres]:
    """A fresh cluster for the length of a with-block (a module's fixture)."""
    cluster = Postgres()
    try:
        yield cluster
    finally:
        cluster.close()
