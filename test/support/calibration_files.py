"""Calibration files for tests, written the way `emotion-train calibrate` writes them (the same JSON keys)."""
import json
from pathlib import Path

import numpy as np

from emotion_ros.core.emotion.calibration import FORMAT, file_sha256
from emotion_ros.core.emotion.model import default_model_path, read_labels, labels_path_for


def model_classes(model_path=None) -> list:
    model_path = Path(model_path or default_model_path())
    return list(read_labels(labels_path_for(model_path)))


def calibration_doc(bias, model_path=None, weight=None, method=None, classes=None) -> dict:
    """A calibration document for the shipped default model (or `model_path`): bias (C,), weight (C, C) or I."""
    model_path = Path(model_path or default_model_path())
    classes = classes or model_classes(model_path)
    bias = np.asarray(bias, np.float64)
    weight = np.eye(len(bias)) if weight is None else np.asarray(weight, np.float64)
    return {'format': FORMAT,
            'model': {'name': model_path.stem, 'path': str(model_path), 'sha256': file_sha256(model_path)},
            'classes': list(classes),
            'method': method or ('bias' if np.array_equal(weight, np.eye(len(bias))) else 'matrix'),
            'lambda': 0.01,
            'parameters': {'weight': weight.tolist(), 'bias': bias.tolist()},
            'command': 'written by a test'}


def write_calibration(path, bias=None, doc=None, **kwargs) -> Path:
    path = Path(path)
    path.write_text(json.dumps(doc if doc is not None else calibration_doc(bias, **kwargs)))
    return path


def favouring(label: str, strength: float = 8.0, model_path=None) -> np.ndarray:
    """A bias that adds `strength` to one class's log-probability (e^8: ~3000 times the odds)."""
    classes = model_classes(model_path)
    bias = np.zeros(len(classes))
    bias[classes.index(label)] = strength
    return bias


def prototypes_doc(prototypes, alpha: float, model_path=None) -> dict:
    """A `prototypes` calibration document: (C, D) class prototypes, log p + alpha * cos(embedding, P_c)."""
    prototypes = np.asarray(prototypes, np.float64)
    doc = calibration_doc(np.zeros(len(prototypes)), model_path=model_path, method='prototypes')
    doc['parameters'].update(alpha=alpha, prototypes=prototypes.tolist())
    return doc
