"""Helpers for tests that run real nodes as processes and listen to them over (shared-memory) DDS."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

VENV_BIN = Path(sys.executable).parent


def ros_args(params: Optional[Dict] = None, remaps: Optional[Dict] = None, params_file: Optional[str] = None) -> List[str]:
    args = ['--ros-args']
    if params_file:
        args += ['--params-file', str(params_file)]
    for k, v in (params or {}).items():
        if isinstance(v, bool):
            v = 'true' if v else 'false'
        elif v == '':
            v = "''"
        args += ['-p', f'{k}:={v}']
    for k, v in (remaps or {}).items():
        args += ['-r', f'{k}:={v}']
    return args


class NodeProcess:
    """A console-script node in its own process; output captured to a file; always ended by `stop`."""

    def __init__(self, script: str, args: List[str], env: dict, log_dir: Path):
        self.log_path = log_dir / f'{script}_{time.monotonic_ns()}.log'
        self._log = open(self.log_path, 'w')
        self.proc = subprocess.Popen([str(VENV_BIN / script)] + args, env=env, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def stop(self, timeout: float = 10.0) -> Optional[int]:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=timeout)
        self._log.close()
        return self.proc.returncode

    @property
    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors='replace')


def spin_until(node, done: Callable[[], bool], timeout: float) -> bool:
    """Spin `node` (in this process) until `done()` or timeout; True if done."""
    import rclpy
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.05)
        if done():
            return True
    return done()


def stamp_ns(header) -> int:
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


def set_param(node, target: str, name: str, value) -> None:
    """Set `target`'s parameter through its service, as `ros2 param set` does; asserts it was accepted."""
    from rclpy.parameter import Parameter
    from rclpy.parameter_client import AsyncParameterClient
    client = AsyncParameterClient(node, target)
    assert client.wait_for_services(timeout_sec=30), f'no parameter services on {target}'
    future = client.set_parameters([Parameter(name, value=value)])
    assert spin_until(node, future.done, 30), f'no answer setting {name}'
    result = future.result().results[0]
    assert result.successful, f'{name} := {value!r} refused: {result.reason}'


def wait_active(node, target: str, proc: NodeProcess, timeout: float = 150.0) -> None:
    """Until `target`'s lifecycle state (its get_state service) is `active`; asserts it, with the process's log."""
    from lifecycle_msgs.srv import GetState
    client = node.create_client(GetState, f'/{target}/get_state')
    end = time.monotonic() + timeout
    label = ''
    while time.monotonic() < end and proc.proc.poll() is None:
        if client.wait_for_service(timeout_sec=1.0):
            future = client.call_async(GetState.Request())
            spin_until(node, future.done, 10.0)
            label = future.result().current_state.label if future.done() and future.result() else ''
            if label == 'active':
                break
        time.sleep(0.2)
    node.destroy_client(client)
    assert label == 'active', (target, label, proc.output[-3000:])
