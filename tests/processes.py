"""Real processes for the tests that need them: the `geoflora` command, process groups killed on
close, waiting for a condition, and a server started as production starts it."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest


def geoflora() -> str:
    """The `geoflora` command of this environment."""
    exe = Path(sys.executable).with_name("geoflora")
    return str(exe) if exe.is_file() else shutil.which("geoflora")


def parent(pid: int) -> int:
    """The parent process id of ``pid`` (Linux /proc)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def children(pid: int) -> set[int]:
    """Live child process ids of ``pid`` (Linux /proc)."""
    out = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                if parent(int(entry.name)) == pid:
                    out.add(int(entry.name))
    return out


def wait_for(predicate, timeout: float, what: str, every: float = 0.2):
    """``predicate()``'s first truthy value within ``timeout`` seconds, else the test fails."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


class Processes:
    """Processes started in their own process groups, all killed (group and all) on close."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.started: list[subprocess.Popen] = []

    def start(self, name: str, cmd: list[str], env: dict) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "wb")
        proc = subprocess.Popen(cmd, cwd=self.logs, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        log.close()
        self.started.append(proc)
        return proc

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def close(self) -> None:
        for proc in reversed(self.started):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in reversed(self.started):
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


def server_env(data_dir: Path, **settings) -> dict:
    """The environment of a server on ``data_dir``: this one's, less any GEOFLORA_ setting, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEOFLORA_")}
    env.update(GEOFLORA_DATA_DIR=str(data_dir), PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
               **{f"GEOFLORA_{k.upper()}": str(v) for k, v in settings.items()})
    return env


def start_server(processes: Processes, name: str, port: int, workers: int, env: dict,
                 timeout: float = 90) -> subprocess.Popen:
    """`geoflora serve` (gunicorn, as production runs it), once it answers /api/health."""
    proc = processes.start(name, [geoflora(), "serve", "--host", "127.0.0.1", "--port", str(port),
                                  "--workers", str(workers)], env)

    def healthy():
        if proc.poll() is not None:
            pytest.fail(f"the server exited with {proc.returncode}:\n{processes.log(name)[-3000:]}")
        with contextlib.suppress(httpx.TransportError):
            return httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200
        return False

    wait_for(healthy, timeout, "the server to answer /api/health", every=0.3)
    return proc
