"""`ros2 launch emotion_ros live.launch.py ...` as users run it, in its own process group, for launch tests."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional

import pytest

VENV_BIN = Path(sys.executable).parent
PREFIX = Path(sys.prefix)


def require_ros2_launch() -> None:
    """Skip with the reason unless the real ros2 CLI and this package's ament-index entries are installed."""
    if not (VENV_BIN / 'ros2').exists():
        pytest.skip('needs the real ros2 CLI in the venv (make setup installs it from ../shared/ros2-tools)')
    if not (PREFIX / 'share' / 'emotion_ros' / 'launch' / 'live.launch.py').exists():
        pytest.skip(f'needs share/emotion_ros in {PREFIX} (make setup writes the ament-index entries)')


def launch_env(ros_env: dict, **extra) -> dict:
    env = dict(ros_env, AMENT_PREFIX_PATH=str(PREFIX), PATH=f'{VENV_BIN}{os.pathsep}{os.environ["PATH"]}')
    env.update({k: str(v) for k, v in extra.items()})
    return env


class Launch:
    """One `ros2 launch` process group; output in a file; `stop()` is Ctrl-C to the whole group (then SIGKILL)."""

    def __init__(self, args: List[str], env: dict, log_dir: Path, stdin=subprocess.DEVNULL, name: str = 'launch'):
        self.log_path = log_dir / f'{name}_{time.monotonic_ns()}.log'
        self._log = open(self.log_path, 'w')
        self.proc = subprocess.Popen([str(VENV_BIN / 'ros2'), 'launch', 'emotion_ros', 'live.launch.py', *args],
                                     env=env, stdin=stdin, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def interrupt(self) -> None:
        """Ctrl-C as a terminal sends it: SIGINT to every process of the group."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)

    def wait(self, timeout: float) -> Optional[int]:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = 60.0) -> Optional[int]:
        self.interrupt()
        code = self.wait(timeout)
        if code is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=30)
        else:
            self._kill_leftovers()
        self._log.close()
        return code

    def _kill_leftovers(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # nodes that outlived launch (a failed test's leftovers)
        except (ProcessLookupError, PermissionError):
            pass

    @property
    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors='replace')

    def started(self) -> List[str]:
        return re.findall(r'\[INFO\] \[([\w-]+)\]: process started with pid', self.output)

    def pids(self, process: str) -> List[int]:
        """Pids launch reported for `process` (e.g. 'face_detector_node'), oldest first (respawns after)."""
        return [int(p) for p in re.findall(rf'\[INFO\] \[{re.escape(process)}-\d+\]: process started with pid \[(\d+)\]',
                                            self.output)]

    def ended_cleanly(self) -> List[str]:
        return re.findall(r'\[INFO\] \[([\w-]+)\]: process has finished cleanly', self.output)

    def died(self) -> List[str]:
        return re.findall(r'\[([\w-]+)\]: process has died.*', self.output)

    def frames_published(self) -> int:
        m = re.search(r'(\d+) frames published', self.output)
        return int(m.group(1)) if m else -1
