"""Start one node in its own process: clear one-line errors and a non-zero exit instead of tracebacks."""
from __future__ import annotations

import sys
from typing import Callable, Optional, Sequence

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node

from emotion_ros.core.param_spec import ParameterError


class StartupError(RuntimeError):
    """A node cannot start (bad parameter, missing model, unopenable source); the message says why."""


def run_node(factory: Callable[[], Node], args: Optional[Sequence[str]] = None) -> int:
    """Create the node, spin it until shutdown (Ctrl-C, or the node calling `request_shutdown`), return exit code."""
    try:
        rclpy.init(args=args)
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
        while rclpy.ok() and not getattr(node, 'finished', False):
            executor.spin_once(timeout_sec=0.1)
        return int(getattr(node, 'exit_code', 0))
    except (KeyboardInterrupt, ExternalShutdownException):
        return 0
    finally:
        if node is not None:
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


def main_for(factory: Callable[[], Node]) -> Callable[[], None]:
    def main() -> None:
        sys.exit(run_node(factory, sys.argv))
    return main
