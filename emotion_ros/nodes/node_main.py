"""Start one node in its own process: clear one-line errors and a non-zero exit instead of tracebacks."""
from __future__ import annotations

import signal
import sys
import time
from typing import Callable, Optional, Sequence

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from emotion_ros.core.cpu_threads import limit_native_threads
from emotion_ros.core.frames.memory import keep_frame_buffers
from emotion_ros.core.param_spec import ParameterError


# A node that finished (lifecycle `shutdown`, end of a file) keeps spinning this long before it destroys its
# participant: the shutdown transition's reply is sent from the executor, and a participant destroyed at once lost
# it under load (`ros2 lifecycle set ... shutdown` then waited 90 s for an answer, in a CI run with two CPU hogs).
LINGER_S = 1.0


class StartupError(RuntimeError):
    """A node cannot start (bad parameter, missing model, unopenable source); the message says why."""


class StopRequest:
    """SIGINT and SIGTERM, noted: the spin loop ends between callbacks, then the node takes its `shutdown`
    transition (final state published, everything released) while its context is still valid.

    Installed instead of rclpy's handlers (`SignalHandlerOptions.NO`): those shut the context down inside the
    signal handler, so a node's last message had nowhere to go (the HRI publisher's final empty `tracked`
    raised "publisher's context is invalid" and the process exited 1). A KeyboardInterrupt is never raised:
    it lands wherever Python happens to be, and inside rclpy's C++ message conversion it became
    `RuntimeError: Unable to convert call argument '0' to Python object` (the detector died with exit 1 on
    Ctrl-C, CI 2026-12-02, 1 of 20 SIGINTs into a detector flooded with 640x480 frames). The spin waits at most
    0.1 s between checks of the flag, so a node ends within that of a signal outside a long callback."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signum = 0

    def __call__(self, signum, frame) -> None:
        self.signum = self.signum or signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ''

    def install(self) -> 'StopRequest':
        for sig in self.SIGNALS:
            signal.signal(sig, self)
        return self


def ignore_further_interrupts() -> None:
    """Once ending, a second SIGINT (`ros2 launch` sends one when stdin is not a terminal) or SIGTERM must do
    nothing: Python resets a handler function to SIG_DFL while it finalizes (the process then died with -2);
    SIG_IGN stays."""
    for sig in StopRequest.SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def spin_for(executor, seconds: float) -> None:
    """Spin while the context lasts, for `seconds` (replies and final messages leave before a participant goes)."""
    until = time.monotonic() + seconds
    while rclpy.ok() and time.monotonic() < until:
        executor.spin_once(timeout_sec=0.05)


def run_node(factory: Callable[[], Node], args: Optional[Sequence[str]] = None) -> int:
    """Create the node, spin it until it is finished (end of source, lifecycle `shutdown`) or Ctrl-C; exit code.

    Ctrl-C, SIGTERM and lifecycle shutdown exit 0 (a signal first takes the node through `shutdown`, see
    StopRequest); a node that cannot start exits 2 with one log line."""
    limit_native_threads()
    keep_frame_buffers()
    stop = StopRequest().install()
    try:
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    except RuntimeError as exc:  # rclpy's RCLError: unparsable --ros-args
        print(f'cannot start: invalid ROS arguments: {str(exc).split(", at ")[0]}', file=sys.stderr)
        return 2
    node = None
    try:
        try:
            node = factory()
        except (ParameterError, StartupError, OSError, ValueError) as exc:
            rclpy.logging.get_logger('emotion_ros').fatal(f'cannot start: {exc}')
            return 2
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        while rclpy.ok() and not getattr(node, 'finished', False) and not stop.signum:
            executor.spin_once(timeout_sec=0.1)
        if stop.signum:
            ignore_further_interrupts()
            end = getattr(node, 'end', None)
            if end is not None:
                end(f'{stop.name} received', linger=lambda: spin_for(executor, LINGER_S))
        if getattr(node, 'finished', False):
            spin_for(executor, LINGER_S)
        return int(getattr(node, 'exit_code', 0))
    except (ExternalShutdownException, RuntimeError) as exc:
        # RuntimeError: Ctrl-C mid-callback or while starting; rclpy refuses to use the context it shut down
        if isinstance(exc, RuntimeError) and rclpy.ok():
            raise
        return 0
    finally:
        ignore_further_interrupts()
        if node is not None:
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
        ignore_further_interrupts()  # rclpy.shutdown() puts back the handler it replaced


def main_for(factory: Callable[[], Node]) -> Callable[[], None]:
    def main() -> None:
        sys.exit(run_node(factory, sys.argv))
    return main
