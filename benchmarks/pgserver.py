"""A throwaway PostgreSQL server for real_suites.py: Debian's binaries, a loopback port.

``running()`` initialises a cluster in a fresh temp dir (data, Unix socket and log), starts it on
a free port of 127.0.0.1 with trust authentication for the superuser ``postgres``, and on exit
stops it and deletes the dir. Run as root, the server commands run as the ``postgres`` user
(initdb refuses root); Debian's ``postgresql`` package is installed with apt-get if no
``/usr/lib/postgresql/*/bin/initdb`` is found. The server logs DDL statements, so
``created()`` can tell which databases a run made (pytest-django makes one per xdist worker).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SUPERUSER = "postgres"
HOST = "127.0.0.1"
SYSTEM_DATABASES = ("postgres", "template0", "template1")
INSTALLED = Path("/usr/lib/postgresql")
# A server for tests: nothing it writes needs to survive a crash of the machine.
SERVER_SETTINGS = {
    "listen_addresses": HOST,
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "log_statement": "ddl",
}
CREATE_DATABASE = re.compile(r'statement: CREATE DATABASE "?([^"\s;]+)')


def _version(bindir: Path) -> list[int]:
    return [int(number) for number in re.findall(r"\d+", bindir.parent.name)]


def _installed_bindirs() -> list[Path]:
    return sorted((initdb.parent for initdb in INSTALLED.glob("*/bin/initdb")), key=_version)


def server_bindir() -> Path:
    """The newest installed PostgreSQL's bin dir; Debian's package is installed if there is none."""
    if not _installed_bindirs():
        if os.geteuid() != 0 or not shutil.which("apt-get"):
            raise SystemExit(f"no PostgreSQL server in {INSTALLED}: apt-get install postgresql")
        print("  installing Debian's postgresql", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-q"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-q", "postgresql"], check=True, env=env)
    bindirs = _installed_bindirs()
    if not bindirs:
        raise SystemExit(f"installing postgresql gave no {INSTALLED}/*/bin/initdb")
    return bindirs[-1]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class PgServer:
    bindir: Path
    home: Path  # data dir, socket and log, all removed at the end
    port: int
    as_postgres: bool  # run the server's commands as the postgres user (we are root)
    log_read: int = 0  # how far created() has read the log

    @property
    def log(self) -> Path:
        return self.home / "server.log"

    def url(self, dbname: str) -> str:
        """A ``DATABASE_URL`` (dj-database-url's form) for database ``dbname`` of this server."""
        return f"postgres://{SUPERUSER}@{HOST}:{self.port}/{dbname}"

    def _server_command(self, *args: str) -> None:
        subprocess.run(
            [str(self.bindir / args[0]), *args[1:]],
            cwd=self.home,
            user=SUPERUSER if self.as_postgres else None,
            check=True,
            stdout=subprocess.DEVNULL,
        )

    def start(self) -> None:
        data = self.home / "data"
        self._server_command("initdb", "-D", str(data), "-U", SUPERUSER, "-A", "trust", "-N")
        options = [f"-p {self.port}", f"-k {self.home}"]
        options += [f"-c {name}={value}" for name, value in SERVER_SETTINGS.items()]
        start = ["pg_ctl", "-D", str(data), "-l", str(self.log), "-w", "-o", " ".join(options)]
        try:
            self._server_command(*start, "start")
        except subprocess.CalledProcessError:
            print(self.log.read_text(errors="replace") if self.log.exists() else "(no log)")
            raise
        self.log_read = self.log.stat().st_size

    def stop(self) -> None:
        data = str(self.home / "data")
        try:
            self._server_command("pg_ctl", "-D", data, "-m", "fast", "-w", "stop")
        except subprocess.CalledProcessError:
            self._server_command("pg_ctl", "-D", data, "-m", "immediate", "-w", "stop")

    def psql(self, sql: str) -> list[str]:
        """The rows ``sql`` returns (unaligned, one line each), run on database postgres."""
        args = ["-h", HOST, "-p", str(self.port), "-U", SUPERUSER, "-d", "postgres", "-XAtq"]
        out = subprocess.run(
            [str(self.bindir / "psql"), *args, "-c", sql],
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, "PGCONNECT_TIMEOUT": "10"},
        )
        return out.stdout.splitlines()

    def databases(self) -> list[str]:
        """The databases besides postgres and the templates (what ``psql -l`` would add)."""
        rows = self.psql("SELECT datname FROM pg_database ORDER BY datname")
        return [name for name in rows if name not in SYSTEM_DATABASES]

    def drop(self, names: list[str]) -> None:
        for name in names:
            quoted = name.replace('"', '""')
            self.psql(f'DROP DATABASE IF EXISTS "{quoted}" WITH (FORCE)')

    def created(self) -> list[str]:
        """The databases created since the last call (from the server's DDL log), in order."""
        with self.log.open("rb") as log:
            log.seek(self.log_read)
            text = log.read().decode(errors="replace")
            self.log_read = log.tell()
        return CREATE_DATABASE.findall(text)


@contextlib.contextmanager
def running() -> Iterator[PgServer]:
    """A started server; at the end, its databases are listed, and it is stopped and deleted."""
    bindir = server_bindir()
    as_postgres = os.geteuid() == 0
    home = Path(tempfile.mkdtemp(prefix="procpar-pg-"))
    try:
        if as_postgres:
            shutil.chown(home, SUPERUSER, SUPERUSER)
        server = PgServer(bindir, home, free_port(), as_postgres)
        server.start()
        print(f"  PostgreSQL {bindir.parent.name} on {HOST}:{server.port} in {home}", flush=True)
        try:
            yield server
            left = server.databases()  # what psql -l would list besides postgres and templates
            print(f"  databases left on the server: {', '.join(left) or 'none'}", flush=True)
        finally:
            server.stop()
    finally:
        shutil.rmtree(home, ignore_errors=True)
