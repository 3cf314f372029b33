"""A real PostgreSQL server for the tests: Debian's `postgresql` (the Makefile's TEST_DEBS), initdb'd into a
temporary directory and run with pg_ctl on a free 127.0.0.1 port.

PostgreSQL refuses to run as root, and the tests (CI) run as root: then the server runs as the unprivileged
`nobody` (its directory is made theirs); as any other user it runs as that user. Fast and disposable:
no fsync (a killed server loses nothing committed: the OS keeps the writes), trust authentication on 127.0.0.1 and the socket in the temporary directory.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from tritone.serving.triton import free_port

UNPRIVILEGED = "nobody"


def binaries() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[-3]))
    if not found:
        raise RuntimeError("PostgreSQL is not installed: the tests need Debian's postgresql package "
                           "(make system-packages installs it)")
    return Path(found[-1]).parent


class PostgresServer:
    def __init__(self):
        self.bin = binaries()
        self.dir = Path(tempfile.mkdtemp(prefix="tritone-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self.port = free_port()
        self.user = None
        if os.geteuid() == 0:
            account = pwd.getpwnam(UNPRIVILEGED)
            self.user = (account.pw_uid, account.pw_gid)
            os.chown(self.dir, *self.user)

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        kwargs = {"user": self.user[0], "group": self.user[1], "extra_groups": []} if self.user else {}
        return subprocess.run([str(self.bin / args[0]), *args[1:]], capture_output=True, text=True, check=check,
                              cwd=self.dir, env={"PATH": os.environ.get("PATH", ""), "LC_ALL": "C",
                                                 "HOME": str(self.dir)}, timeout=60, **kwargs)

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C",
                  "--no-sync")

    def start(self) -> None:
        options = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c full_page_writes=off -c max_connections=200")
        done = self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60",
                         "start", check=False)
        if done.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed: {done.stdout}{done.stderr}\n{self.log_tail()}")

    def stop(self, mode: str = "fast") -> None:
        """`immediate`: as if the server died (no shutdown checkpoint, clients cut off)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop", check=False)

    def running(self) -> bool:
        return self._run("pg_ctl", "-D", str(self.data), "status", check=False).returncode == 0

    def url(self, database: str = "postgres", password: str | None = None) -> str:
        auth = "postgres" + (f":{password}" if password else "")
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url().replace("postgresql://", "postgresql://", 1), autocommit=True) as db:
            db.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text().splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
