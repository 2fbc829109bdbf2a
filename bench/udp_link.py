"""Two "hosts" over DDS on UDP: the camera on one, face detector + emotion classifier on the other.

The link is Fast DDS over UDPv4 only, whitelisted to 127.0.0.1 (config/fastdds_udp_localhost.xml: no shared
memory, no other interface). `run_link()` runs the whole graph inside a network namespace of its own
(`unshare --net`, or through a user namespace when not root; only `lo` in it) where that is allowed, so no packet can leave the machine whatever a
library does; elsewhere it runs on the host's 127.0.0.1 with the same profile and reports that, with the
host's eth0 TX counters before and after.

Inside, this module runs as a driver (`python udp_link.py --transport raw|compressed ...`): it starts the
camera process ("host A", demo source) and the perception processes ("host B", `image_transport` raw or
compressed on both), listens to `camera_info` and `emotions` itself, and prints one JSON line: frames,
emotions, latency (image stamp -> emotions here), bytes over `lo` per second and per frame (every byte in
the namespace is ours), whether any node mapped a Fast DDS shared-memory segment, and the interfaces seen.

Used by test/graph/test_multi_host.py (CI) and bench/bench_link.py (raw vs compressed latency and bandwidth).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / 'config' / 'fastdds_udp_localhost.xml'
VENV_BIN = Path(sys.executable).parent
MARK = 'UDP_LINK_RESULT '


def net_dev() -> dict:
    """{interface: (rx_bytes, tx_bytes, tx_packets)} from /proc/net/dev."""
    out = {}
    for line in Path('/proc/net/dev').read_text().splitlines()[2:]:
        name, data = line.split(':', 1)
        f = data.split()
        out[name.strip()] = (int(f[0]), int(f[8]), int(f[9]))
    return out


def link_env(domain_id: int, scratch: Path, isolated: bool) -> dict:
    """Inside a private namespace (only lo) the discovery range is SUBNET: with LOCALHOST, rmw_fastrtps
    replaces the profile's transports with its own (UDP on localhost plus shared memory: measured, every
    node then maps /dev/shm/fastdds_* segments), so the link would not be UDP-only. On the host the range
    stays LOCALHOST (network hygiene first) and the result says shared memory was available."""
    env = dict(os.environ)
    env.update({'FASTDDS_DEFAULT_PROFILES_FILE': str(PROFILE),
                'ROS_AUTOMATIC_DISCOVERY_RANGE': 'SUBNET' if isolated else 'LOCALHOST',
                'ROS_DOMAIN_ID': str(domain_id), 'RMW_IMPLEMENTATION': 'rmw_fastrtps_cpp',
                'ROS_LOG_DIR': str(scratch / 'log'), 'ROS_HOME': str(scratch / 'home'), 'PYTHONUNBUFFERED': '1'})
    return env


def _shm_mapped(pid: int) -> bool:
    try:
        return any('/dev/shm/' in line and 'fastdds' in line for line in Path(f'/proc/{pid}/maps').open())
    except OSError:
        return False


def drive(transport: str, fps: float, seconds: float, warmup: float, quality: int) -> dict:
    """Run the two hosts and the listener in this process's network namespace; the figures as a dict."""
    import numpy as np
    import rclpy
    from sensor_msgs.msg import CameraInfo

    from emotion_msgs.msg import EmotionArray
    from emotion_ros.nodes.qos import latest_frame_qos, results_qos
    scratch = Path(tempfile.mkdtemp(prefix='emotion_ros_udp_link_'))
    env = dict(os.environ)
    remaps = ['-r', 'image:=image_raw', '-r', 'image/compressed:=image_raw/compressed']
    procs = {}
    frames, emotions = {}, {}
    rclpy.init()
    node = rclpy.create_node('udp_link_listener')
    node.create_subscription(CameraInfo, 'camera_info', lambda m: frames.setdefault(_ns(m.header), time.time_ns()),
                             latest_frame_qos(100))
    node.create_subscription(EmotionArray, 'emotions',
                             lambda m: emotions.setdefault(_ns(m.header), (time.time_ns(), len(m.emotions),
                                                                           [e.expression for e in m.emotions])),
                             results_qos(100))

    def start(name, script, args):
        log = open(scratch / f'{name}.log', 'w')
        procs[name] = (subprocess.Popen([str(VENV_BIN / script), '--ros-args', *args], env=env, stdout=log,
                                        stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_die_with_parent),
                       scratch / f'{name}.log')

    def spin(until, timeout):
        end = time.monotonic() + timeout
        while time.monotonic() < end and not until():
            rclpy.spin_once(node, timeout_sec=0.05)
        return until()

    try:
        both = ['-p', f'image_transport:={transport}']
        start('face_detector', 'face_detector_node', remaps + both)          # host B
        start('emotion_classifier', 'emotion_classifier_node', remaps + both)
        if not spin(lambda: node.count_publishers('emotions') > 0, 90):
            raise RuntimeError('perception host did not come up')
        start('camera', 'camera_node', ['-p', 'source:=demo', '-p', 'loop:=true', '-p', f'fps:={fps}',  # host A
                                        '-p', f'compressed_quality:={quality if transport == "compressed" else 0}',
                                        '-p', 'wait_for_subscribers:=2', '-p', 'wait_timeout_s:=60.0'])
        if not spin(lambda: len(emotions) > 0, 90):
            raise RuntimeError('no emotions over the link within 90 s')
        spin(lambda: False, warmup)
        dev0, t0 = net_dev(), time.time_ns()
        spin(lambda: False, seconds)
        dev1, t1 = net_dev(), time.time_ns()
        spin(lambda: False, 1.0)
        shm = {name: _shm_mapped(p.pid) for name, (p, _) in procs.items()}
        window = [s for s in frames if t0 <= s < t1]
        done = [s for s in window if s in emotions]
        latency = [(emotions[s][0] - s) / 1e6 for s in done]
        lo = [b - a for a, b in zip(dev0.get('lo', (0, 0, 0)), dev1.get('lo', (0, 0, 0)))]
        wall = (t1 - t0) / 1e9
        labels = [x for s in done for x in emotions[s][2]]
        return {
            'transport': transport, 'fps': fps, 'window_s': wall, 'frames': len(window), 'with_emotions': len(done),
            'faces_per_frame': float(np.mean([emotions[s][1] for s in done])) if done else 0.0,
            'happy_share': labels.count('happy') / max(1, len(labels)),
            'latency_p50_ms': float(np.median(latency)) if latency else None,
            'latency_p95_ms': float(np.percentile(latency, 95)) if latency else None,
            'lo_bytes_per_s': lo[0] / wall, 'lo_bytes_per_frame': lo[0] / max(1, len(window)),
            'interfaces': sorted(dev1), 'shm_mapped': shm,
            'alive': {name: p.poll() is None for name, (p, _) in procs.items()},
        }
    finally:
        for p, _ in procs.values():
            if p.poll() is None:
                os.killpg(p.pid, 2)
        for name, (p, log) in procs.items():
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, 9)
                p.wait(5)
        node.destroy_node()
        rclpy.shutdown()
        shutil.rmtree(scratch, ignore_errors=True)


def _die_with_parent() -> None:
    """Children get SIGTERM when the driver dies (a killed test must not leave a looping camera behind)."""
    import ctypes
    import signal
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)                    # PR_SET_PDEATHSIG


def _ns(header) -> int:
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


def lo_up() -> None:
    """Bring up `lo` in a fresh network namespace (it starts down), without iproute2: SIOCSIFFLAGS."""
    import fcntl
    import socket
    import struct
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack('16sH', b'lo', 0) + bytes(22)
        flags = struct.unpack('16sH', fcntl.ioctl(sock, 0x8913, request)[:18])[1]           # SIOCGIFFLAGS
        fcntl.ioctl(sock, 0x8914, struct.pack('16sH', b'lo', flags | 0x1 | 0x40) + bytes(22))  # UP | RUNNING


def unshare_prefix() -> list:
    """argv prefix that runs a command in a new network namespace (as root, or unprivileged through a user
    namespace), or [] where neither is allowed."""
    if not shutil.which('unshare'):
        return []
    for prefix in (['unshare', '--net'], ['unshare', '--user', '--map-root-user', '--net']):
        probe = subprocess.run(prefix + [sys.executable, '-c', 'import sys; sys.path.insert(0, sys.argv[1]); '
                                         'import udp_link; udp_link.lo_up()', str(Path(__file__).parent)],
                               capture_output=True)
        if probe.returncode == 0:
            return prefix
    return []


def can_unshare() -> bool:
    return bool(unshare_prefix())


def run_link(transport: str, fps: float = 30.0, seconds: float = 10.0, warmup: float = 3.0, quality: int = 80,
             domain_id: int = 42, timeout: float = 300.0) -> dict:
    """The driver in a private network namespace where possible (else on the host's 127.0.0.1); its JSON."""
    scratch = Path(tempfile.mkdtemp(prefix='emotion_ros_udp_env_'))
    prefix = unshare_prefix()
    isolated = bool(prefix)
    env = link_env(domain_id, scratch, isolated)
    driver = [sys.executable, str(Path(__file__).resolve()), '--transport', transport, '--fps', str(fps),
              '--seconds', str(seconds), '--warmup', str(warmup), '--quality', str(quality)] + \
        (['--lo-up'] if isolated else [])
    argv = prefix + driver
    host_before = net_dev()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)                                    # the driver; its nodes follow (PDEATHSIG)
        out, err = proc.communicate()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait()
        shutil.rmtree(scratch, ignore_errors=True)
    proc = subprocess.CompletedProcess(argv, proc.returncode, out, err)
    host_after = net_dev()
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)), None)
    if line is None:
        raise RuntimeError(f'udp link driver failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n'
                           f'{proc.stderr[-3000:]}')
    result = json.loads(line[len(MARK):])
    result['network_namespace'] = 'private (unshare --net: only lo)' if isolated else 'host (127.0.0.1 whitelist)'
    result['host_tx_packets_during_run'] = {k: host_after[k][2] - host_before[k][2] for k in host_after
                                            if k in host_before and k != 'lo'}
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--transport', choices=('raw', 'compressed'), default='raw')
    ap.add_argument('--fps', type=float, default=30.0)
    ap.add_argument('--seconds', type=float, default=10.0)
    ap.add_argument('--warmup', type=float, default=3.0)
    ap.add_argument('--quality', type=int, default=80)
    ap.add_argument('--lo-up', action='store_true', help='bring up lo first (a fresh network namespace)')
    args = ap.parse_args(argv)
    if args.lo_up:
        lo_up()
    result = drive(args.transport, args.fps, args.seconds, args.warmup, args.quality)
    print(MARK + json.dumps(result), flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
