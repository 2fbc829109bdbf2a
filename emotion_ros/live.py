"""emotion_live: the whole graph (camera, face detector, emotion classifier, optionally Hue) in one process.

Same nodes and the same parameter file as `ros2 launch emotion_ros live.launch.py`; for machines without
`ros2 launch`, and for `make demo`. Prints a summary (frames, faces, expressions, latency) at the end.
"""
from __future__ import annotations

import argparse
import sys
import threading
import time
from collections import Counter
from typing import List, Optional

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.signals import SignalHandlerOptions

from emotion_msgs.msg import EmotionArray
from emotion_ros.nodes.config_files import config_file
from emotion_ros.core.cpu_threads import limit_native_threads
from emotion_ros.core.frames.memory import keep_frame_buffers
from emotion_ros.core.param_spec import ParameterError
from emotion_ros.nodes.node_main import LINGER_S, StartupError, StopRequest, ignore_further_interrupts, spin_for
from emotion_ros.nodes.qos import results_qos


# In one process the GIL serialises all Python work, so a second core is reachable only through native threads:
# the classifier's LiteRT invoke (GIL released) on 2 threads. With two CPU hogs on 2 cores (AMD EPYC, 5 faces,
# 2 interleaved pairs of 25 s) it kept 99 / 99 % of frames at p95 40 / 43 ms against 95 / 98 % at 55 / 69 ms;
# idle it cost ~0.03 cores more. A parameter file or -p num_threads:=N still decides.
CLASSIFIER_DEFAULTS = {'num_threads': 2}


class LiveSummary(Node):
    """Counts what the graph produced and the latency from image stamp to `emotions` received."""

    def __init__(self, gif=None, **node_kwargs):
        super().__init__('live_summary', **node_kwargs)
        self.gif = gif
        if gif is not None:
            from sensor_msgs.msg import Image
            from emotion_ros.nodes.qos import latest_frame_qos
            self.create_subscription(Image, 'image_annotated', self._on_annotated, latest_frame_qos())
        self.latencies_ms: List[float] = []
        self.labels: Counter = Counter()
        self.faces = 0
        self.emotion_msgs = 0
        self.face_msgs = 0
        self.last_message = time.monotonic()
        self.create_subscription(EmotionArray, 'emotions', self._on_emotions, results_qos(100))

    def _on_emotions(self, msg: EmotionArray) -> None:
        now = self.get_clock().now().nanoseconds
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        self.latencies_ms.append((now - stamp) / 1e6)
        self.emotion_msgs += 1
        self.faces += len(msg.emotions)
        self.labels.update(e.expression for e in msg.emotions)
        self.last_message = time.monotonic()

    def _on_annotated(self, msg) -> None:
        from emotion_ros.nodes.ros_image import image_to_bgr
        self.gif.add(image_to_bgr(msg), msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9)

    def report(self, frames_published: int, wall_s: float) -> str:
        import numpy as np
        lat = np.array(self.latencies_ms) if self.latencies_ms else np.array([np.nan])
        lines = [
            f'frames published      {frames_published} in {wall_s:.1f} s',
            f'face lists received   {self.face_msgs}',
            f'emotion arrays        {self.emotion_msgs} '
            f'({100.0 * self.emotion_msgs / max(1, frames_published):.0f} % of frames)',
            f'faces classified      {self.faces}',
            'expressions           ' + (', '.join(f'{k} {v}' for k, v in self.labels.most_common()) or 'none'),
            f'latency image->emotions  p50 {np.nanpercentile(lat, 50):.1f} ms   p95 {np.nanpercentile(lat, 95):.1f} ms'
            f'   max {np.nanmax(lat):.1f} ms',
        ]
        return '\n'.join(lines)


def _parse(argv: Optional[List[str]]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog='emotion_live', description=__doc__.splitlines()[0])
    ap.add_argument('--params', default=None, help='ROS parameter file (default: the package\'s config/params.yaml)')
    ap.add_argument('--source', help='camera source: webcam index, video file, image folder, URL, or "demo"')
    ap.add_argument('--detector', help='face detector backend (overrides the parameter file)')
    ap.add_argument('--model', help='emotion model: a .tflite path or a shipped name (emotion, emotion_accurate, '
                                    'emotion_fast); overrides the parameter file; default: emotion')
    ap.add_argument('--calibration', metavar='PATH', help='calibration file from `emotion-train calibrate` for the '
                    'model (the classifier\'s calibration_path; a file that cannot be used is logged and the '
                    'classifier runs uncalibrated)')
    ap.add_argument('--fps', type=float, help='camera publish rate (overrides the parameter file)')
    ap.add_argument('--loop', action='store_true', help='loop a file source')
    ap.add_argument('--duration', type=float, default=0.0, help='stop after this many seconds (0 = until the '
                    'source ends, or Ctrl-C)')
    ap.add_argument('--hue-bridge', default=None, help='drive a Philips Hue bridge at HOST[:PORT], or auto (mDNS); '
                    'API v2 over HTTPS where the bridge speaks it')
    ap.add_argument('--hue-dry-run', action='store_true', help='run the Hue node without a bridge (logs states)')
    ap.add_argument('--record', metavar='DATASET_DIR', default=None,
                    help='run dataset_recorder_node on this FaceLabeler folder (`emotion-dataset capture ...`)')
    ap.add_argument('--namespace', default='', help='namespace of all nodes (e.g. /cam1)')
    ap.add_argument('--hri', action='store_true', help='also publish the REP-155 (ROS4HRI) /humans/faces/... '
                    'topics (hri_publisher_node; needs hri_msgs, docs/ros4hri.md)')
    ap.add_argument('--view', action='store_true', help='serve the live web viewer (emotion_viewer) on '
                    'http://127.0.0.1:8080/')
    ap.add_argument('--view-port', type=int, default=None, help='port of the web viewer (0 = any free port)')
    ap.add_argument('--gif', metavar='PATH', default=None, help='write an annotated GIF of the run to PATH')
    args, ros_args = ap.parse_known_args(argv)
    args.ros_args = ros_args
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    limit_native_threads()                 # one OpenCV thread: emotion_ros.core.cpu_threads says why
    keep_frame_buffers()                   # no page faults per frame: emotion_ros.core.frames.memory
    params = args.params or str(config_file('params.yaml'))
    stop = StopRequest().install()         # SIGINT/SIGTERM end the spin; the nodes then end with a valid context
    rclpy.init(args=['emotion_live', '--ros-args', '--params-file', params] + [a for a in args.ros_args
                                                                              if a != '--ros-args'],
               signal_handler_options=SignalHandlerOptions.NO)
    from emotion_ros.nodes.camera_node import CameraNode
    from emotion_ros.nodes.emotion_classifier_node import EmotionClassifierNode
    from emotion_ros.nodes.face_detector_node import FaceDetectorNode

    remap = ['--ros-args', '-r', 'image:=image_raw']
    # detector, classifier; they share this process's participant, so there is no discovery to settle
    camera_overrides = [Parameter('wait_for_subscribers', value=2), Parameter('wait_settle_s', value=0.0)]
    if args.source is not None:
        camera_overrides.append(Parameter('source', value=args.source))
    if args.fps is not None:
        camera_overrides.append(Parameter('fps', value=float(args.fps)))
    if args.loop:
        camera_overrides.append(Parameter('loop', value=True))
    detector_overrides = [Parameter('backend', value=args.detector)] if args.detector else []
    nodes, hue_executor, hue_thread = [], None, None
    log = rclpy.logging.get_logger('emotion_live')
    try:
        try:
            kw = dict(namespace=args.namespace)
            gif = None
            if args.gif:
                from emotion_ros.core.frames.gif import GifClip
                gif = GifClip(source_fps=args.fps or 30.0)
            summary = LiveSummary(gif=gif, **kw)
            classifier_overrides = [Parameter('model_path', value=args.model)] if args.model else []
            if args.calibration is not None:
                classifier_overrides.append(Parameter('calibration_path', value=args.calibration))
            classifier = EmotionClassifierNode(cli_args=remap, parameter_overrides=classifier_overrides,
                                               param_defaults=CLASSIFIER_DEFAULTS, **kw)
            detector = FaceDetectorNode(cli_args=remap, parameter_overrides=detector_overrides, **kw)
            camera = CameraNode(parameter_overrides=camera_overrides, **kw)
            nodes = [summary, classifier, detector, camera]
            if args.record:
                nodes.append(_recorder(args, kw, remap))
            if args.view:
                nodes.append(_viewer(args, kw))
            if args.hri:
                from emotion_ros.nodes.hri_publisher_node import HriPublisherNode
                nodes.append(HriPublisherNode(cli_args=remap, **kw))
            shared = list(nodes)
            if args.hue_bridge or args.hue_dry_run:
                hue_executor, hue_thread = _start_hue(args, kw, nodes)
        except (ParameterError, StartupError, OSError, ValueError) as exc:
            log.fatal(f'cannot start: {exc}')
            return 2
        executor = SingleThreadedExecutor()
        for node in shared:
            executor.add_node(node)
        start = time.monotonic()
        deadline = start + args.duration if args.duration > 0 else float('inf')
        try:
            while rclpy.ok() and time.monotonic() < deadline and not stop.signum:
                executor.spin_once(timeout_sec=0.05)
                if camera.finished and time.monotonic() - summary.last_message > 1.0:
                    break
        except (KeyboardInterrupt, ExternalShutdownException):  # Ctrl-C: the summary of what ran so far
            ignore_further_interrupts()
        except RuntimeError:   # Ctrl-C mid-callback: a publish on the context rclpy's handler just shut down
            if rclpy.ok():
                raise
            ignore_further_interrupts()
        # The detector's own count: a `faces` subscription here cost a take and an executor wake (~0.5 ms of CPU
        # under load, over the ~100 entities of 4 nodes) per frame just to count them.
        summary.face_msgs = detector.frames
        print(summary.report(camera.frames_published, time.monotonic() - start), flush=True)
        if gif is not None:
            _save_gif(gif, args.gif)
        return 0
    except (KeyboardInterrupt, ExternalShutdownException):
        return 0
    finally:
        ignore_further_interrupts()
        if hue_executor is not None:
            hue_executor.shutdown()
            hue_thread.join(timeout=5)
        _end(nodes, stop.name or 'end of run')
        for node in nodes:
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


def _end(nodes, why: str) -> None:
    """Every node through its `shutdown` transition (final state published: the HRI publisher's empty `tracked`),
    then a moment of spinning so those messages leave before the participant goes (as node_main does)."""
    ending = [n for n in nodes if hasattr(n, 'end') and not getattr(n, 'finished', False)]
    if not ending or not rclpy.ok():
        return
    executor = SingleThreadedExecutor()
    for node in nodes:
        executor.add_node(node)
    why += ' received' if why.startswith('SIG') else ''
    for node in ending:                       # output stops everywhere first; then one linger for all
        if node.active:
            node.trigger_deactivate()
    spin_for(executor, LINGER_S)
    for node in ending:
        node.end(why)
    spin_for(executor, LINGER_S / 2)


def _recorder(args, kw, remap):
    """Cheap (idle until asked, its bursts await frames without blocking): shares the main executor."""
    from emotion_ros.nodes.dataset_recorder_node import DatasetRecorderNode
    return DatasetRecorderNode(cli_args=remap, parameter_overrides=[Parameter('dataset_dir', value=args.record)],
                               **kw)


def _viewer(args, kw):
    """Its callbacks only hand data to the server's own threads: it shares the main executor."""
    from emotion_ros.nodes.viewer_node import ViewerNode
    overrides = [Parameter('port', value=args.view_port)] if args.view_port is not None else []
    return ViewerNode(parameter_overrides=overrides, **kw)


def _save_gif(gif, path) -> None:
    try:
        print(f'annotated clip          {gif.save(path)} ({len(gif.frames)} frames)', flush=True)
    except (OSError, ValueError) as exc:
        print(f'annotated clip          not written: {exc}', flush=True)


def _start_hue(args, kw, nodes):
    """The Hue node talks HTTP (blocking, with timeouts): give it its own executor so it never stalls frames."""
    from emotion_ros.nodes.hue_actuator_node import HueActuatorNode
    overrides = []
    if args.hue_bridge:
        overrides.append(Parameter('bridge', value=args.hue_bridge))
    if args.hue_dry_run:
        overrides.append(Parameter('dry_run', value=True))
    hue = HueActuatorNode(parameter_overrides=overrides, **kw)
    nodes.append(hue)
    executor = SingleThreadedExecutor()
    executor.add_node(hue)
    thread = threading.Thread(target=_spin_until_shutdown, args=(executor,), name='hue_executor', daemon=True)
    thread.start()
    return executor, thread


def _spin_until_shutdown(executor) -> None:
    """Ctrl-C shuts the context down under the thread's feet: that ends the thread, it is no error."""
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass


if __name__ == '__main__':
    sys.exit(main())
