"""Processes a benchmark starts stay on this machine and never outlive it.

Every child gets shared-memory-only Fast DDS, localhost discovery, a ROS domain of its own and scratch
homes (see ../shared/ros2-pip/README.md, "Network hygiene"); each runs in its own process group, and
`ProcessGroup.stop_all` (also run at exit and on SIGTERM/SIGINT) ends them all. Mirrors
test/conftest.py and test/support/ros_graph.py without depending on pytest.
"""
from __future__ import annotations

import atexit
import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'test' / 'support'))  # local_dds: the isolation settings the tests use

from local_dds import local_ros_env as isolation_env  # noqa: E402
from local_dds import shm_files as _shm_files  # noqa: E402
from local_dds import shm_in_use as _shm_in_use  # noqa: E402

VENV_BIN = Path(sys.executable).parent
CLK_TCK = os.sysconf('SC_CLK_TCK')


def local_ros_env(scratch: Path, domain_id: Optional[int] = None) -> dict:
    """os.environ plus the isolation settings; a fresh random domain unless one is given."""
    env = dict(os.environ)
    env.update(isolation_env(scratch, domain_id))
    return env


def isolate_this_process(scratch: Path, domain_id: Optional[int] = None) -> dict:
    """Apply local_ros_env to os.environ (before rclpy is imported) and return it."""
    env = local_ros_env(scratch, domain_id)
    os.environ.update(env)
    tempfile.tempdir = None
    return env


def ros_args(params: Optional[Dict] = None, remaps: Optional[Dict] = None) -> List[str]:
    args = ['--ros-args']
    for k, v in (params or {}).items():
        if isinstance(v, bool):
            v = 'true' if v else 'false'
        args += ['-p', f'{k}:={v}']
    for k, v in (remaps or {}).items():
        args += ['-r', f'{k}:={v}']
    return args


def _group_stats(pgid: int):
    """(pid, /proc/<pid>/stat fields after the command name) of each process in a process group."""
    for stat in glob.glob('/proc/[0-9]*/stat'):
        try:
            text = Path(stat).read_text()
        except OSError:
            continue
        fields = text[text.rfind(')') + 2:].split()
        if int(fields[2]) == pgid:
            yield int(stat.split('/')[2]), fields


def group_members(pgid: int) -> List[int]:
    """Pids of the live (not zombie) processes in a process group."""
    return [pid for pid, fields in _group_stats(pgid) if fields[0] != 'Z']


def group_cpu_seconds(pgid: int) -> float:
    """user+system CPU seconds of every live process in a process group (all their threads)."""
    return sum(int(f[11]) + int(f[12]) for _, f in _group_stats(pgid)) / CLK_TCK


class Child:
    """One command in its own process group, output to a log file."""

    def __init__(self, argv: List[str], env: dict, log_path: Path):
        self.argv, self.log_path = argv, log_path
        self._log = open(log_path, 'w')
        self.started = time.monotonic()
        self.proc = subprocess.Popen(argv, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu_seconds(self) -> float:
        return group_cpu_seconds(self.proc.pid)

    def stop(self, timeout: float = 10.0) -> Optional[int]:
        if self.proc.poll() is None:
            for sig, wait in ((signal.SIGINT, timeout), (signal.SIGKILL, timeout)):
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if not self._log.closed:
            self._log.close()
        return self.proc.returncode

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors='replace')


class ProcessGroup:
    """Children of one benchmark, with a scratch folder; everything is ended and removed on exit."""

    def __init__(self, prefix: str = 'emotion_ros_bench_', handle_signals: bool = True):
        self.scratch = Path(tempfile.mkdtemp(prefix=prefix))
        self.children: List[Child] = []
        self._shm_before = _shm_files()
        atexit.register(self.stop_all)
        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(sig, self._on_signal)

    def _on_signal(self, signum, frame):
        self.stop_all()
        raise SystemExit(128 + signum)

    def start(self, argv: List[str], env: dict, name: str) -> Child:
        child = Child(argv, env, self.scratch / f'{name}_{len(self.children)}.log')
        self.children.append(child)
        return child

    def start_script(self, script: str, args: List[str], env: dict, name: Optional[str] = None) -> Child:
        return self.start([str(VENV_BIN / script)] + args, env, name or script)

    def stop_all(self) -> None:
        for child in reversed(self.children):
            child.stop()
        self.children = []
        for path in _shm_files() - self._shm_before - _shm_in_use():
            try:
                os.unlink(path)
            except OSError:
                pass

    def remove_scratch(self) -> None:
        self.stop_all()
        shutil.rmtree(self.scratch, ignore_errors=True)
