"""Processes of the server under test (Linux /proc)."""

import pathlib


def rss_kb(pid: int) -> int:
    """Resident set size of a process (Linux /proc)."""
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def workers_of(parent: int) -> list[int]:
    """The uvicorn worker processes under the supervisor `parent`."""
    out = []
    for entry in pathlib.Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) != parent:
                continue
            try:  # not multiprocessing's resource tracker, only the spawned workers
                command = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"resource_tracker" not in command:
                out.append(int(entry.name))
    return sorted(out)
