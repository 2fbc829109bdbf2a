"""What the web viewer costs the graph: `emotion_live` on the male clip without the viewer, with it and no
browser, with 1 and with 10 WebSocket viewers (aiohttp clients), and with 1 viewer plus a stalled client that
reads nothing, in one run, scenarios interleaved over `--rounds`. Per scenario: the process's CPU (cores),
the share of frames that got emotions, and the frames each viewer received.

Usage: .venv/bin/python bench/bench_viewer.py [--rounds 2] [--seconds 20]
"""
from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent / 'test' / 'support'))
from local_ros import group_cpu_seconds, local_ros_env  # noqa: E402
from machine import cpu_kind, machine_info, write_results  # noqa: E402
from viewer_clients import stalled_client, watch_websockets  # noqa: E402

CLIP = BENCH.parent.parent / 'shared' / 'media' / 'head-pose-face-detection-male.mp4'
SCENARIOS = {  # name: (viewer, browsers, stalled)
    'no viewer': (False, 0, False),
    'viewer, no browser': (True, 0, False),
    'viewer, 1 browser': (True, 1, False),
    'viewer, 10 browsers': (True, 10, False),
    'viewer, 1 browser + 1 stalled': (True, 1, True),
}


def run(name: str, seconds: float, scratch: Path) -> dict:
    viewer, browsers, stalled = SCENARIOS[name]
    env = local_ros_env(scratch)
    log_path = scratch / f'{re.sub(r"[^a-z0-9]+", "_", name)}_{time.monotonic_ns()}.log'
    args = [str(Path(sys.executable).parent / 'emotion_live'), '--source', str(CLIP), '--loop', '--fps', '12']
    args += ['--view', '--view-port', '0'] if viewer else []
    with open(log_path, 'w') as log:
        proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url, stall = None, None
    try:
        end = time.monotonic() + 180
        while time.monotonic() < end:
            text = log_path.read_text()
            m = re.search(r'viewer at (http://127\.0\.0\.1:\d+/)', text)
            if 'file source' in text and (m or not viewer):
                url = m.group(1) if m else None
                break
            time.sleep(0.3)
        time.sleep(5.0)  # warm-up: model loaded, first frames through
        if stalled:
            stall = stalled_client(int(url.rsplit(':', 1)[1].strip('/')))
        cpu0, t0 = group_cpu_seconds(proc.pid), time.monotonic()
        counts = [g['frames'] for g in watch_websockets(url, seconds, browsers)] if browsers else \
            (time.sleep(seconds) or [])
        cpu1, t1 = group_cpu_seconds(proc.pid), time.monotonic()
    finally:
        if stall is not None:
            stall.close()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
    text = log_path.read_text()
    m = re.search(r'frames published\s+(\d+).*?emotion arrays\s+(\d+)', text, re.S)
    published, classified = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
    return {'scenario': name, 'cores': (cpu1 - cpu0) / (t1 - t0), 'frames_published': published,
            'emotions_share': classified / published if published else None,
            'frames_per_browser_per_s': [c / (t1 - t0) for c in counts]}


def print_table(report: dict) -> None:
    m = report['machine']
    print(f"\n{m['cpu_model']} ({m['cpu_kind']}), load average at start {m['load_average'][0]:.1f}; "
          f"male clip at 12 fps, {report['seconds']:.0f} s x {report['rounds']} rounds per scenario")
    print(f"{'scenario':32s} {'cores':>6s} {'emotions/frames':>16s} {'fps per browser (min..max)':>28s}")
    for name, s in report['scenarios'].items():
        fps = s['browser_fps']
        span = f"{min(fps):.1f}..{max(fps):.1f}" if fps else '-'
        print(f"{name:32s} {s['cores_median']:6.3f} {s['emotions_share_min'] * 100:15.0f}% {span:>28s}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--rounds', type=int, default=2)
    ap.add_argument('--seconds', type=float, default=20.0)
    args = ap.parse_args(argv)
    if not CLIP.exists():
        print(f'needs {CLIP}', file=sys.stderr)
        return 2
    scratch = Path(tempfile.mkdtemp(prefix='bench_viewer_'))
    info = machine_info()
    runs = {name: [] for name in SCENARIOS}
    for _ in range(args.rounds):
        for name in SCENARIOS:  # interleaved: a load change hits every scenario alike
            runs[name].append(run(name, args.seconds, scratch))
            print(runs[name][-1], flush=True)
    report = {'machine': info, 'rounds': args.rounds, 'seconds': args.seconds, 'scenarios': {
        name: {'cores_median': statistics.median(r['cores'] for r in rs),
               'emotions_share_min': min((r['emotions_share'] or 0.0) for r in rs),
               'browser_fps': [f for r in rs for f in r['frames_per_browser_per_s']], 'runs': rs}
        for name, rs in runs.items()}}
    write_results(BENCH / 'results' / cpu_kind(info) / 'viewer.json', report, print_table)
    return 0


if __name__ == '__main__':
    sys.exit(main())
