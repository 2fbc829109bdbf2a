"""End-to-end benchmark through the real graph: camera -> face detector -> emotion classifier over DDS.

Scenarios (camera at 30 fps, 640x480, looping), each idle and `_loaded`, back to back in one run:
  separate_1_face    camera_node, face_detector_node, emotion_classifier_node as three processes; demo source
  separate_5_faces   the same on a five-face clip (bench/five_faces.py, JPEG frames: decoded like a camera's)
  live_single_*      `emotion_live`, the one-process runner (SingleThreadedExecutor, as shipped), same sources
  *_loaded           the same with two CPU-burning background processes (`python -c 'while True: pass'`,
                     as many as HOGS, at the same priority) started before the graph and ended after it: a
                     robot computer is never idle. The hogs' own CPU and the load average are recorded.
Opt-in (--only): live_multi_1_face / live_events_1_face / live_split_*: the runner with rclpy's
MultiThreadedExecutor (stalls here), the C++ EventsExecutor, or the camera on a thread of its own
(bench/live_executor.py), for executor comparisons.

This process is the listener (a separate process from every node): it subscribes to `camera_info`
(published with each frame, same header; small, so counting frames costs nothing), `faces` (the
detector's output: splits the latency into detection and classification) and `emotions`.
Latency = time the `emotions` callback runs here - the image header stamp (one system clock).
After a warm-up, a fixed window is measured: frames stamped in it, frames with no `emotions` (dropped),
latency p50/p95/max, stalls (gaps > 500 ms between results), and CPU per process group from
/proc/<pid>/stat (utime+stime) over exactly that window, as a share of one core. The one-process
runner's own printed summary is parsed and kept too.

Usage: .venv/bin/python bench/bench_e2e.py [--duration 20] [--warmup 3] [--only NAME ...] [--out ...]
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / 'bench'))

from local_ros import VENV_BIN, ProcessGroup, isolate_this_process, ros_args  # noqa: E402
from machine import machine_info, write_results  # noqa: E402
from stats import ratio, summarise_ms  # noqa: E402

FPS, WIDTH, HEIGHT = 30.0, 640, 480
BASE = ('separate_1_face', 'separate_5_faces', 'live_single_1_face', 'live_single_5_faces')
SCENARIOS = tuple(n for b in BASE for n in (b, b + '_loaded'))
OPT_IN = ('live_multi_1_face', 'live_events_1_face', 'live_split_1_face', 'live_split_1_face_loaded',
          'live_split_5_faces_loaded')
HOGS = 2
HOG = "while True: pass"
GOAL_P95_MS = 40.0
GOAL_TOTAL_CORES = 1.0
GOAL_SHARE = 0.99
STALL_MS = 500.0


class Listener:
    """Collects frame stamps (camera_info) and `emotions` arrival times; one node per scenario."""

    def __init__(self, name: str):
        import rclpy
        from sensor_msgs.msg import CameraInfo

        from emotion_msgs.msg import EmotionArray, FaceArray
        from emotion_ros.nodes.qos import latest_frame_qos, results_qos
        self.node = rclpy.create_node(name)
        self.frames = {}
        self.emotions = {}
        self.faces = {}
        self.mw_latency_ms = []
        self.info_sub = self.node.create_subscription(CameraInfo, 'camera_info', self._on_info, latest_frame_qos(100))
        self.emotion_sub = self.node.create_subscription(EmotionArray, 'emotions', self._on_emotions,
                                                         results_qos(100))
        self.node.create_subscription(FaceArray, 'faces', self._on_faces, results_qos(100))

    @staticmethod
    def _stamp(header) -> int:
        return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec

    def _on_info(self, msg) -> None:
        self.frames.setdefault(self._stamp(msg.header), time.time_ns())

    def _on_faces(self, msg) -> None:
        self.faces.setdefault(self._stamp(msg.header), time.time_ns())

    def _on_emotions(self, msg, info) -> None:
        now = time.time_ns()
        stamp = self._stamp(msg.header)
        if stamp not in self.emotions:
            self.emotions[stamp] = (now, len(msg.emotions))
            received = info.get('received_timestamp') if isinstance(info, dict) else None
            if received and abs(received - now) < 1_000_000_000:
                self.mw_latency_ms.append((received - stamp) / 1e6)

    def spin_for(self, seconds: float, until=None) -> bool:
        import rclpy
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            rclpy.spin_once(self.node, timeout_sec=0.02)
            if until is not None and until():
                return True
        return until() if until is not None else True

    def close(self) -> None:
        self.node.destroy_node()


def _cpu_snapshot(children: dict) -> dict:
    return {name: child.cpu_seconds() for name, child in children.items()}


def measure(listener: Listener, children: dict, warmup: float, duration: float) -> dict:
    """Wait for the first frame, warm up, then measure one window; returns the window's figures."""
    got_frame = listener.spin_for(60.0, lambda: bool(listener.frames) or any(
        c.proc.poll() is not None for c in children.values()))
    if not got_frame or not listener.frames:
        raise RuntimeError('no frame within 60 s')
    listener.spin_for(warmup)
    t0_ns, m0, cpu0 = time.time_ns(), time.monotonic(), _cpu_snapshot(children)
    self_cpu0 = os.times()
    listener.spin_for(duration)
    t1_ns, m1, cpu1 = time.time_ns(), time.monotonic(), _cpu_snapshot(children)
    self_cpu1 = os.times()
    listener.spin_for(1.5)
    wall = m1 - m0
    frames = sorted(s for s in listener.frames if t0_ns <= s < t1_ns)
    done = [s for s in frames if s in listener.emotions]
    latency = [(listener.emotions[s][0] - s) / 1e6 for s in done]
    arrivals = sorted(listener.emotions[s][0] for s in done)
    gaps_ms = np.diff(arrivals) / 1e6 if len(arrivals) > 1 else np.zeros(0)
    faces = [listener.emotions[s][1] for s in done]
    cpu = {name: (cpu1[name] - cpu0[name]) / wall for name in children}
    span = (frames[-1] - frames[0]) / 1e9 if len(frames) > 1 else 0.0
    expected = int(round(wall * FPS))
    return {
        'window_s': wall,
        'frames_expected_at_target_fps': expected,
        'frames_in_window': len(frames),
        'frames_short_of_target': max(0, expected - len(done)),
        'camera_fps': (len(frames) - 1) / span if span else 0.0,
        'frames_with_emotions': len(done),
        'frames_dropped': len(frames) - len(done),
        'dropped_share': (len(frames) - len(done)) / max(1, len(frames)),
        'faces_per_frame_mean': float(np.mean(faces)) if faces else 0.0,
        'stalls_over_500ms': int((gaps_ms > STALL_MS).sum()),
        'longest_gap_between_results_ms': float(gaps_ms.max()) if gaps_ms.size else None,
        'latency': summarise_ms(latency),
        'latency_to_faces': summarise_ms([(listener.faces[s] - s) / 1e6 for s in frames if s in listener.faces]),
        'latency_middleware_receive': summarise_ms([v for v in listener.mw_latency_ms]),
        'cpu_cores': cpu,
        'cpu_cores_total': sum(cpu.values()),
        'listener_cpu_cores': ((self_cpu1.user + self_cpu1.system) - (self_cpu0.user + self_cpu0.system)) / wall,
    }


def run_separate(group: ProcessGroup, env: dict, source: str, name: str, warmup: float, duration: float) -> dict:
    listener = Listener(f'bench_listener_{name}')
    remap = {'image': 'image_raw'}
    try:
        children = {
            'face_detector_node': group.start_script('face_detector_node', ros_args(remaps=remap), env),
            'emotion_classifier_node': group.start_script('emotion_classifier_node', ros_args(remaps=remap), env),
        }
        ready = listener.spin_for(90.0, lambda: listener.emotion_sub.get_publisher_count() > 0)
        if not ready:
            raise RuntimeError('classifier did not come up:\n' + _logs(children))
        camera = {'source': source, 'fps': FPS, 'width': WIDTH, 'height': HEIGHT, 'loop': True,
                  'wait_for_subscribers': 2, 'wait_timeout_s': 60.0}
        children['camera_node'] = group.start_script('camera_node', ros_args(camera), env)
        try:
            result = measure(listener, children, warmup, duration)
        except RuntimeError as exc:
            raise RuntimeError(f'{exc}\n{_logs(children)}') from exc
        result['processes'] = list(children)
        return result
    finally:
        listener.close()
        group.stop_all()


def run_live(group: ProcessGroup, env: dict, executor: str, name: str, warmup: float, duration: float,
             source: str = 'demo') -> dict:
    listener = Listener(f'bench_listener_{name}')
    try:
        total = warmup + duration + 6.0
        live_args = ['--source', source, '--loop', '--fps', str(FPS), '--duration', str(total)]
        argv = ([str(VENV_BIN / 'emotion_live')] if executor == 'single' else
                [str(VENV_BIN / 'python'), str(REPO / 'bench' / 'live_executor.py'), executor]) + live_args
        child = group.start(argv, env, f'emotion_live_{executor}')
        children = {'emotion_live': child}
        try:
            result = measure(listener, children, warmup, duration)
        except RuntimeError as exc:
            raise RuntimeError(f'{exc}\n{_logs(children)}') from exc
        child.proc.wait(timeout=total + 30)
        result['runner_summary'] = parse_live_summary(child.output())
        result['runner_exit_code'] = child.proc.returncode
        if not result['runner_summary'] or child.proc.returncode != 0:
            result['runner_log_tail'] = child.output()[-3000:]
        result['processes'] = list(children)
        result['executor'] = {'multi': 'MultiThreadedExecutor', 'events': 'EventsExecutor',
                              'split': 'SingleThreadedExecutor + camera thread'}.get(
            executor, 'SingleThreadedExecutor')
        return result
    finally:
        listener.close()
        group.stop_all()


def parse_live_summary(text: str) -> dict:
    """The figures emotion_live prints at the end (whole run, warm-up included)."""
    out = {}
    m = re.search(r'frames published\s+(\d+) in ([\d.]+) s', text)
    if m:
        out['frames_published'], out['wall_s'] = int(m.group(1)), float(m.group(2))
    m = re.search(r'emotion arrays\s+(\d+)', text)
    if m:
        out['emotion_arrays'] = int(m.group(1))
    m = re.search(r'latency image->emotions\s+p50 ([\d.]+) ms\s+p95 ([\d.]+) ms\s+max ([\d.]+) ms', text)
    if m:
        out['p50_ms'], out['p95_ms'], out['max_ms'] = (float(v) for v in m.groups())
    return out


def with_load(env: dict, hogs: int, run) -> dict:
    """`run()` with `hogs` CPU-burning processes in the background (a process group of their own, ended
    whatever happens); their CPU share and the load average are recorded beside the result."""
    hog_group = ProcessGroup('emotion_ros_bench_hogs_', handle_signals=False)
    try:
        started = [hog_group.start([sys.executable, '-c', HOG], env, f'hog{i}') for i in range(hogs)]
        before, t0 = os.getloadavg(), time.monotonic()
        cpu0 = [h.cpu_seconds() for h in started]
        result = run()
        wall = time.monotonic() - t0
        cpu = [h.cpu_seconds() - c for h, c in zip(started, cpu0)]
    finally:
        hog_group.stop_all()
        hog_group.remove_scratch()
    result['background_load'] = {'hogs': hogs, 'hog_cpu_cores': [c / wall for c in cpu] if wall else [],
                                 'load_average_before': before, 'load_average_after': os.getloadavg()}
    return result


def _logs(children: dict) -> str:
    return '\n'.join(f'--- {name}\n{child.output()[-2000:]}' for name, child in children.items())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--duration', type=float, default=20.0, help='measured window per scenario, s (default 20)')
    parser.add_argument('--warmup', type=float, default=3.0, help='seconds after the first frame before measuring')
    parser.add_argument('--only', nargs='*', choices=SCENARIOS + OPT_IN, help='run these scenarios only')
    parser.add_argument('--hogs', type=int, default=HOGS, help=f'background CPU hogs in *_loaded (default {HOGS})')
    parser.add_argument('--out', type=Path, help='default bench/results/<cpu kind>/e2e.json')
    args = parser.parse_args(argv)
    started = time.monotonic()
    group = ProcessGroup('emotion_ros_bench_e2e_')
    env = isolate_this_process(group.scratch)
    import rclpy
    from five_faces import write_frames
    rclpy.init()
    info = machine_info()
    results, errors = {}, {}
    try:
        five = str(write_frames(group.scratch / 'five_faces', frames=60))
        base = {
            'separate_1_face': lambda: run_separate(group, env, 'demo', 'sep1', args.warmup, args.duration),
            'separate_5_faces': lambda: run_separate(group, env, five, 'sep5', args.warmup, args.duration),
            'live_single_1_face': lambda: run_live(group, env, 'single', 'live1', args.warmup, args.duration),
            'live_single_5_faces': lambda: run_live(group, env, 'single', 'live5', args.warmup, args.duration, five),
            'live_multi_1_face': lambda: run_live(group, env, 'multi', 'live_mt', args.warmup, args.duration),
            'live_events_1_face': lambda: run_live(group, env, 'events', 'live_ev', args.warmup, args.duration),
            'live_split_1_face': lambda: run_live(group, env, 'split', 'live_sp1', args.warmup, args.duration),
            'live_split_5_faces': lambda: run_live(group, env, 'split', 'live_sp5', args.warmup, args.duration, five),
        }
        plan = dict(base)
        for name in ('live_split_1_face', 'live_split_5_faces'):
            plan[name + '_loaded'] = (lambda run: lambda: with_load(env, args.hogs, run))(base[name])
        for name in BASE:
            plan[name + '_loaded'] = (lambda run: lambda: with_load(env, args.hogs, run))(base[name])
        for name in args.only or SCENARIOS:
            print(f'[e2e] {name} ...', flush=True)
            try:
                load = os.getloadavg()
                results[name] = plan[name]()
                results[name].setdefault('background_load', {'hogs': 0, 'load_average_before': load,
                                                             'load_average_after': os.getloadavg()})
            except (RuntimeError, OSError) as exc:
                errors[name] = str(exc)[-4000:]
                print(f'[e2e] {name} failed: {str(exc)[:2000]}', file=sys.stderr)
    finally:
        rclpy.shutdown()
        group.remove_scratch()
    base = results.get('separate_1_face')
    for r in results.values():
        if base:
            r['vs_separate_1_face'] = {'latency_p50': ratio(r['latency']['p50_ms'], base['latency']['p50_ms']),
                                       'latency_p95': ratio(r['latency']['p95_ms'], base['latency']['p95_ms']),
                                       'cpu_cores_total': ratio(r['cpu_cores_total'], base['cpu_cores_total'])}
        r['share_of_due_frames_with_emotions'] = r['frames_with_emotions'] / max(1, r['frames_expected_at_target_fps'])
        r['goals'] = {'every_frame': r['frames_dropped'] == 0 and r['frames_short_of_target'] <= 1,
                      'frames_99pct': r['share_of_due_frames_with_emotions'] >= GOAL_SHARE,
                      'p95_le_40ms': r['latency']['p95_ms'] is not None and r['latency']['p95_ms'] <= GOAL_P95_MS,
                      'under_one_core': r['cpu_cores_total'] < GOAL_TOTAL_CORES}
    report = {'machine': info, 'fps': FPS, 'size': [WIDTH, HEIGHT], 'warmup_s': args.warmup,
              'window_s': args.duration, 'ros_domain_id': int(env['ROS_DOMAIN_ID']),
              'goals': {'p95_ms': GOAL_P95_MS, 'total_cores_1_face': GOAL_TOTAL_CORES, 'every_frame': True,
                        'share_of_due_frames': GOAL_SHARE},
              'hogs': args.hogs, 'hog_command': f"{Path(sys.executable).name} -c '{HOG}'",
              'scenarios': results, 'errors': errors, 'wall_s': time.monotonic() - started}
    write_results(args.out or REPO / 'bench' / 'results' / info['cpu_kind'] / 'e2e.json', report, print_table)
    return 1 if errors and not results else 0


def print_table(report: dict) -> None:
    print(f"camera {report['fps']:.0f} fps {report['size'][0]}x{report['size'][1]}, "
          f"{report['window_s']:.0f} s window after {report['warmup_s']:.0f} s warm-up")
    head = (f"{'scenario':26} {'frames':>6} {'fps':>5} {'drop':>5} {'faces':>5} {'p50 ms':>7} {'p95':>6} {'max':>6} "
            f"| {'cores':>5}  per process")
    print(head)
    print('-' * len(head))
    for name, r in report['scenarios'].items():
        lat = r['latency']
        per = ', '.join(f'{k.replace("_node", "")} {v:.2f}' for k, v in r['cpu_cores'].items())
        print(f"{name:26} {r['frames_in_window']:6} {r['camera_fps']:5.1f} {r['frames_dropped']:5} "
              f"{r['faces_per_frame_mean']:5.1f} "
              f"{lat['p50_ms'] or 0:7.1f} {lat['p95_ms'] or 0:6.1f} {lat['max_ms'] or 0:6.1f} "
              f"| {r['cpu_cores_total']:5.2f}  {per}")
    for name, err in report['errors'].items():
        print(f'{name}: FAILED: {err.splitlines()[0] if err else ""}')


if __name__ == '__main__':
    sys.exit(main())
