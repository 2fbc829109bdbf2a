"""How much the live face detector's crop wanders from frame to frame, in pixels of the 48x48 crop.

Training augmentation should shift and zoom faces about as much as the live detector's boxes do. For every
tracked face in the clips of ../shared/media, each frame's crop square (the classifier's crop: the box grown
by the backend's margin) is compared with the centred 5-frame median of its track (a smooth estimate of where
the face is); the residuals of centre and size are the jitter the classifier sees.

    python bench/crop_jitter.py [--backend blazeface] [--json bench/results/<kind>/crop_jitter.json]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'bench'))
MEDIA = REPO.parent / 'shared' / 'media'


def track_boxes(clip: Path, backend: str) -> dict:
    from emotion_ros.core.faces.crop import MARGIN_FOR_BACKEND, crop_square
    from emotion_ros.core.faces.detection import create_detector
    from emotion_ros.core.faces.tracking import FaceTracker
    det, tracker = create_detector(backend), FaceTracker()
    cap = cv2.VideoCapture(str(clip))
    tracks, frame_no = {}, 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        boxes = det.detect(frame)
        for tid, box in zip(tracker.update(boxes), boxes):
            x, y, s = crop_square((box.x, box.y, box.w, box.h), MARGIN_FOR_BACKEND.get(backend, 1.0))
            tracks.setdefault(tid, []).append((frame_no, x + s / 2, y + s / 2, s))
        frame_no += 1
    return {k: np.array(v, np.float64) for k, v in tracks.items()}


def residuals(track: np.ndarray, window: int = 5) -> np.ndarray:
    """(dx, dy) as a fraction of the crop size and log size ratio against the centred running median."""
    out, h = [], window // 2
    for i in range(h, len(track) - h):
        seg = track[i - h:i + h + 1]
        if seg[-1, 0] - seg[0, 0] != window - 1:          # a gap in the track: not consecutive frames
            continue
        med = np.median(seg[:, 1:], axis=0)
        _, cx, cy, s = track[i]
        out.append(((cx - med[0]) / med[2], (cy - med[1]) / med[2], np.log(s / med[2])))
    return np.array(out).reshape(-1, 3)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--backend', default='blazeface')
    ap.add_argument('--json', help='write the result here')
    args = ap.parse_args(argv)
    clips = sorted(MEDIA.glob('*.mp4'))
    if not clips:
        print(f'no clips in {MEDIA}', file=sys.stderr)
        return 2
    res, per_clip = [], {}
    for clip in clips:
        r = [residuals(t) for t in track_boxes(clip, args.backend).values()]
        r = np.concatenate(r) if r else np.zeros((0, 3))
        per_clip[clip.name] = int(len(r))
        res.append(r)
    r = np.concatenate(res)
    px = np.abs(r[:, :2]) * 48
    scale = np.abs(np.expm1(r[:, 2]))
    result = {'backend': args.backend, 'samples': int(len(r)), 'samples_per_clip': per_clip,
              'shift_px_of_48': {'std': round(float((r[:, :2] * 48).std()), 2),
                                 'p95': round(float(np.percentile(px, 95)), 2),
                                 'max': round(float(px.max()), 2)},
              'scale_fraction': {'std': round(float(r[:, 2].std()), 4),
                                 'p95': round(float(np.percentile(scale, 95)), 4),
                                 'max': round(float(scale.max()), 4)}}
    try:
        from machine import machine_info
        result['machine'] = machine_info()
    except Exception:  # noqa: BLE001 - the figure stands without the machine record
        pass
    print(json.dumps({k: v for k, v in result.items() if k != 'machine'}))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
