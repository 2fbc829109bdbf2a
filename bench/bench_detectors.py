"""Face detector benchmark: speed per 640x480 frame, recall / false positives, track-id stability.

All backends run in the same process and are interleaved frame by frame, round after round, so a
neighbour's load (the CPU is shared) hits them alike; figures are medians with p95, and ratios against
the `haar` baseline measured in the same run.

Accuracy rule (facedet_small, all 9 images at their own size): detections are taken best score first
and each is matched to the still-unmatched ground-truth box it overlaps most, if that IoU >= 0.4; a
matched detection is a true positive, any other is a false positive. IoU 0.4 rather than 0.5 because the
dlib ground-truth boxes are tight eyebrow-to-chin squares, while detectors differ in where they put
the forehead and chin.

Id stability (face-demographics-walking-and-pause.mp4, three people): the default FaceTracker on each
backend; distinct ids (ideal 3), id switches (a face matched frame to frame by IoU >= 0.3 whose id
changed), and the share of detected faces that carry an id.

Smallest face: the astronaut portrait (scikit-image) scaled so its face is N px wide and placed on a
grey 640x480 frame; a hit is a box whose centre lies in the scaled reference face box and whose width
is within 0.5..2x of it. Classroom: faces found per frame of classroom.mp4 (4 people face the camera,
11-19 px wide; no ground truth, so a count, not a recall).

Usage: .venv/bin/python bench/bench_detectors.py [--rounds N] [--out bench/results/<cpu kind>/detectors.json]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from emotion_ros.core.faces.detection import BACKENDS, DEFAULT_BACKEND, create_detector  # noqa: E402
from emotion_ros.core.faces.tracking import FaceTracker, iou_matrix  # noqa: E402
from machine import machine_info, write_results  # noqa: E402

SHARED = REPO.parent / 'shared'
FACEDET = SHARED / 'datasets' / 'facedet_small'
MEDIA = SHARED / 'media'
WALKING = MEDIA / 'face-demographics-walking-and-pause.mp4'
MATCH_IOU = 0.4
SCORE_THRESHOLDS = (0.5, 0.6, 0.7)
FACE_WIDTHS = (12, 16, 20, 24, 28, 32, 36, 40, 48, 56, 64, 80, 96, 128)
ASTRONAUT_FACE = (178, 63, 89, 112)
FRAME_SIZE = (640, 480)

CONFIGS = {
    'haar': ('haar', {}),
    'yunet': ('yunet', {}),
    'blazeface': ('blazeface', {}),
    'blazeface:full_sparse': ('blazeface', {'model': 'full_sparse'}),   # MediaPipe's file (the default's source)
    'blazeface:full': ('blazeface', {'model': 'full'}),
    'blazeface:short': ('blazeface', {'model': 'short'}),
    'blazeface:short@256': ('blazeface', {'model': 'short', 'input_size': 256}),   # the 128 net at 2x: recall vs cost
}


def read_video(path: Path) -> list:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


def load_facedet() -> list:
    """[(file, split, BGR image, [x, y, w, h] ground truth)], or [] when the data set is absent."""
    path = FACEDET / 'annotations.json'
    if not path.exists():
        return []
    images = json.loads(path.read_text())['images']
    return [(im['file'], im['split'], cv2.imread(str(FACEDET / im['file'])), im['boxes']) for im in images]


def speed_frames(facedet: list) -> list:
    """640x480 frames with faces at varied sizes: the data set's photos and the clips, resized."""
    sources = [image for _, _, image, _ in facedet]
    for clip in ('head-pose-face-detection-male.mp4', 'face-demographics-walking-and-pause.mp4', 'classroom.mp4'):
        frames = read_video(MEDIA / clip) if (MEDIA / clip).exists() else []
        sources += frames[::max(1, len(frames) // 3)][:3]
    if not sources:
        from skimage import data
        sources = [cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)]
    return [cv2.resize(image, FRAME_SIZE, interpolation=cv2.INTER_AREA) for image in sources]


def time_interleaved(detectors: dict, frames: list, rounds: int) -> dict:
    """Seconds per detect() call for every detector, alternating detectors on each frame."""
    for detector in detectors.values():
        for frame in frames[:3]:
            detector.detect(frame)
    times = {name: [] for name in detectors}
    rng = random.Random(0)
    names = list(detectors)
    for _ in range(rounds):
        for frame in frames:
            rng.shuffle(names)
            for name in names:
                start = time.perf_counter()
                detectors[name].detect(frame)
                times[name].append(time.perf_counter() - start)
    return times


def match_counts(detections: list, truth: list) -> tuple:
    """(true positives, false positives) under the module's greedy IoU >= MATCH_IOU rule."""
    if not detections:
        return 0, 0
    iou = iou_matrix([(d.x, d.y, d.w, d.h) for d in detections], truth)
    free = np.ones(len(truth), dtype=bool)
    tp = 0
    for row in iou:
        candidates = np.where(free, row, -1.0)
        best = int(np.argmax(candidates)) if len(candidates) else -1
        if best >= 0 and candidates[best] >= MATCH_IOU:
            free[best] = False
            tp += 1
    return tp, len(detections) - tp


def accuracy(detector, facedet: list) -> dict:
    result = {}
    detections = [(split, detector.detect(image), truth) for _, split, image, truth in facedet]
    for threshold in SCORE_THRESHOLDS:
        for split in ('all', 'train', 'test'):
            tp = fp = n = 0
            for image_split, found, truth in detections:
                if split != 'all' and image_split != split:
                    continue
                a, b = match_counts([d for d in found if d.score >= threshold], truth)
                tp, fp, n = tp + a, fp + b, n + len(truth)
            result[f'min_score={threshold}/{split}'] = {'faces': n, 'found': tp, 'recall': tp / max(n, 1),
                                                        'false_positives': fp}
    return result


def id_stability(detector, frames: list) -> dict:
    tracker = FaceTracker()
    previous_boxes, previous_ids = [], []
    all_ids, switches, faces, faces_with_id, per_frame = set(), 0, 0, 0, []
    for frame in frames:
        boxes = detector.detect(frame)
        ids = tracker.update(boxes)
        per_frame.append(len(boxes))
        faces += len(boxes)
        faces_with_id += sum(1 for i in ids if i)
        all_ids.update(i for i in ids if i)
        if boxes and previous_boxes:
            iou = iou_matrix([(b.x, b.y, b.w, b.h) for b in boxes], [(b.x, b.y, b.w, b.h) for b in previous_boxes])
            for i, row in enumerate(iou):
                j = int(np.argmax(row))
                if row[j] >= 0.3 and ids[i] and previous_ids[j] and ids[i] != previous_ids[j]:
                    switches += 1
        previous_boxes, previous_ids = boxes, ids
    return {'frames': len(frames), 'distinct_ids': len(all_ids), 'id_switches': switches,
            'faces_with_id_share': faces_with_id / max(faces, 1),
            'frames_with_3_faces': sum(1 for n in per_frame if n == 3)}


def smallest_face(detector) -> dict:
    """Face widths (px, in a 640x480 frame) found and missed, and the smallest width from which all are found."""
    from skimage import data
    portrait = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    found = {}
    for width in FACE_WIDTHS:
        k = width / ASTRONAUT_FACE[2]
        scaled = cv2.resize(portrait, None, fx=k, fy=k, interpolation=cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR)
        frame = np.full((FRAME_SIZE[1], FRAME_SIZE[0], 3), 128, np.uint8)
        h, w = min(scaled.shape[0], FRAME_SIZE[1]), min(scaled.shape[1], FRAME_SIZE[0])
        frame[:h, :w] = scaled[:h, :w]
        x, y, fw, fh = (v * k for v in ASTRONAUT_FACE)
        found[width] = any(x <= b.x + b.w / 2 <= x + fw and y <= b.y + b.h / 2 <= y + fh and 0.5 <= b.w / fw <= 2
                           for b in detector.detect(frame))
    reliable = [w for w in FACE_WIDTHS if all(found[v] for v in FACE_WIDTHS if v >= w)]
    return {'found_by_width': found, 'min_reliable_width_px': min(reliable) if reliable else None}


def faces_per_frame(detector, frames: list) -> dict:
    counts = [len(detector.detect(frame)) for frame in frames]
    return {'frames': len(counts), 'mean_faces': float(np.mean(counts)), 'max_faces': max(counts)}


def summarise(seconds: list) -> dict:
    ms = np.asarray(seconds) * 1000.0
    return {'calls': len(ms), 'median_ms': float(np.median(ms)), 'p95_ms': float(np.percentile(ms, 95)),
            'mean_ms': float(ms.mean())}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--rounds', type=int, default=5, help='passes over the speed frames (default 5)')
    parser.add_argument('--out', type=Path, help='default bench/results/<cpu kind>/detectors.json')
    args = parser.parse_args(argv)

    info = machine_info()
    info.update(load_average_at_start=info['load_average'], opencv=cv2.__version__, numpy=np.__version__)
    facedet = load_facedet()
    if not facedet:
        print(f'note: {FACEDET} absent; recall/false positives skipped', file=sys.stderr)
    walking = read_video(WALKING) if WALKING.exists() else []
    if not walking:
        print(f'note: {WALKING} absent; id stability skipped', file=sys.stderr)
    classroom = read_video(MEDIA / 'classroom.mp4') if (MEDIA / 'classroom.mp4').exists() else []
    detectors = {name: create_detector(backend, **options) for name, (backend, options) in CONFIGS.items()}
    info['omp_wait_policy'] = os.environ.get('OMP_WAIT_POLICY', '')
    frames = speed_frames(facedet)
    times = time_interleaved(detectors, frames, args.rounds)
    info['load_average_at_end'] = os.getloadavg()

    results = {}
    for name, detector in detectors.items():
        backend, options = CONFIGS[name]
        entry = {'backend': backend, 'options': options, 'speed_640x480': summarise(times[name])}
        if facedet:
            entry['facedet_small'] = accuracy(detector, facedet)
        if walking:
            entry['walking_clip_ids'] = id_stability(detector, walking)
        if classroom:
            entry['classroom_faces'] = faces_per_frame(detector, classroom)
        entry['smallest_face'] = smallest_face(detector)
        results[name] = entry
    baseline = results['haar']['speed_640x480']['median_ms']
    default = results[DEFAULT_BACKEND]['speed_640x480']['median_ms']
    for entry in results.values():
        entry['speed_640x480']['median_vs_haar'] = entry['speed_640x480']['median_ms'] / baseline
        entry['speed_640x480']['median_vs_default'] = entry['speed_640x480']['median_ms'] / default

    report = {'machine': info, 'default_backend': DEFAULT_BACKEND, 'backends': list(BACKENDS),
              'speed_frames': len(frames), 'rounds': args.rounds, 'match_iou': MATCH_IOU, 'detectors': results}
    write_results(args.out or REPO / 'bench' / 'results' / info['cpu_kind'] / 'detectors.json', report,
                  print_table)
    return 0


def print_table(report: dict) -> None:
    m = report['machine']
    print(f"{m['cpu_model']}, {m['cores_usable']} usable cores, load {m['load_average_at_start'][0]:.1f} at start; "
          f"{report['speed_frames']} frames x {report['rounds']} rounds, interleaved")
    header = (f"{'detector':22} {'ms med':>7} {'p95':>7} {'x haar':>7} | {'recall@.5':>10} {'FP@.5':>5} "
              f"{'recall@.6':>10} {'FP@.6':>5} | {'ids':>3} {'switch':>6} {'w/ id':>6} | {'class':>5} {'min px':>6}")
    print(header)
    print('-' * len(header))
    for name, entry in report['detectors'].items():
        s = entry['speed_640x480']
        row = f"{name:22} {s['median_ms']:7.2f} {s['p95_ms']:7.2f} {s['median_vs_haar']:7.3f} |"
        acc = entry.get('facedet_small')
        for t in (0.5, 0.6):
            a = acc[f'min_score={t}/all'] if acc else None
            row += (f" {a['found']:>3}/{a['faces']:<3}{a['recall']:4.0%} {a['false_positives']:5}" if a
                    else f" {'-':>10} {'-':>5}")
        ids = entry.get('walking_clip_ids')
        row += (f" | {ids['distinct_ids']:3} {ids['id_switches']:6} {ids['faces_with_id_share']:6.0%}" if ids
                else f" | {'-':>3} {'-':>6} {'-':>6}")
        classroom = entry.get('classroom_faces')
        row += f" | {classroom['mean_faces']:5.1f}" if classroom else f" | {'-':>5}"
        row += f" {entry['smallest_face']['min_reliable_width_px'] or '-':>6}"
        print(row + ('   (default)' if name == report['default_backend'] else ''))


if __name__ == '__main__':
    sys.exit(main())
