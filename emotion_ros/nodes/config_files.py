"""Locate the package's config files whether installed by colcon, pip, or run from a source checkout."""
from __future__ import annotations

import sys
from pathlib import Path

PACKAGE = 'emotion_ros'


def config_dir() -> Path:
    candidates = []
    try:
        from ament_index_python.packages import get_package_share_directory
        candidates.append(Path(get_package_share_directory(PACKAGE)) / 'config')
    except Exception:  # not in an ament index (pip install): fall through to the other places
        pass
    candidates += [Path(__file__).resolve().parents[2] / 'config', Path(sys.prefix) / 'share' / PACKAGE / 'config']
    for path in candidates:
        if (path / 'params.yaml').is_file():
            return path
    raise FileNotFoundError('config/params.yaml not found in: ' + ', '.join(str(c) for c in candidates))


def config_file(name: str) -> Path:
    return config_dir() / name
