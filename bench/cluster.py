"""A throw-away Postgres cluster of the fault bench's own (initdb + pg_ctl), on its own port
in a temporary directory, so that it can be stopped and restarted at will. The machine's
shared Postgres is never touched.

Binaries: the `pgserver` wheel's (a dependency already), else /usr/lib/postgresql/*/bin.
As root (Postgres refuses to run as root) the cluster runs as pgserver's system user
`pgserver`, created the way pgserver itself does.
"""

import glob
import os
import pathlib
import shutil
import socket
import subprocess
import tempfile
import time


def _bin_dir() -> pathlib.Path:
    try:
        import pgserver._commands as commands

        found = pathlib.Path(commands.POSTGRES_BIN_PATH)
        if (found / "pg_ctl").exists():
            return found
    except ImportError:
        pass
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if pathlib.Path(candidate, "pg_ctl").exists():
            return pathlib.Path(candidate)
    raise SystemExit("no Postgres binaries: install the project (pgserver) or postgresql")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """initdb'd on creation; `start`, `stop`, `destroy`."""

    def __init__(self, port: int = 0) -> None:
        self.bin = _bin_dir()
        self.port = port or free_port()
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="espace-faults-pg-"))
        self.data = self.dir / "data"
        self.user: str | None = None
        if os.geteuid() == 0:
            from pgserver.utils import (
                ensure_folder_permissions,
                ensure_prefix_permissions,
                ensure_user_exists,
            )

            self.user = "pgserver"
            ensure_user_exists(self.user)
            ensure_prefix_permissions(self.dir)
            ensure_prefix_permissions(self.bin)
            ensure_folder_permissions(self.bin, 0o055)
            ensure_folder_permissions(self.bin.parent / "lib", 0o044)
            shutil.chown(self.dir, self.user, self.user)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run(
            [str(self.bin / tool), *args],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            user=self.user,
            timeout=120,
        )

    def start(self) -> float:
        """Start and wait until it accepts connections; the seconds it took."""
        t0 = time.perf_counter()
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1"
        log = str(self.dir / "postgres.log")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", log, "-w", "start")
        return time.perf_counter() - t0

    def stop(self, mode: str = "fast") -> float:
        """Stop (fast: active sessions are ended, as in a restart or failover); seconds."""
        t0 = time.perf_counter()
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")
        return time.perf_counter() - t0

    def destroy(self) -> None:
        try:
            self.stop("immediate")
        except subprocess.CalledProcessError:
            pass  # already stopped
        shutil.rmtree(self.dir, ignore_errors=True)
