"""docs/parameters.md from the node specs (the one place defaults and descriptions live).

    python -m emotion_ros.param_docs > docs/parameters.md      # test_param_docs.py keeps the file current
"""
from __future__ import annotations

import importlib
import inspect
import sys
from typing import Iterator, List, Tuple

# executable, module, node name (as launched; `ros2 param list /<namespace>/<name>`)
NODES: Tuple[Tuple[str, str, str], ...] = (
    ('camera_node', 'emotion_ros.nodes.camera_node', 'camera'),
    ('face_detector_node', 'emotion_ros.nodes.face_detector_node', 'face_detector'),
    ('emotion_classifier_node', 'emotion_ros.nodes.emotion_classifier_node', 'emotion_classifier'),
    ('hue_actuator_node', 'emotion_ros.nodes.hue_actuator_node', 'hue_actuator'),
    ('dataset_recorder_node', 'emotion_ros.nodes.dataset_recorder_node', 'dataset_recorder'),
    ('emotion_viewer', 'emotion_ros.nodes.viewer_node', 'emotion_viewer'),
    ('hri_publisher_node', 'emotion_ros.nodes.hri_publisher_node', 'hri_publisher'),
)


def _specs(module_name: str) -> List:
    from emotion_ros.nodes.managed_node import AUTOSTART, ManagedNode
    module = importlib.import_module(module_name)
    specs = list(module.SPECS)
    managed = any(inspect.isclass(v) and issubclass(v, ManagedNode) and v is not ManagedNode
                  for v in vars(module).values())
    return specs + ([AUTOSTART] if managed and AUTOSTART.name not in {s.name for s in specs} else [])


def _cell(text) -> str:
    return str(text).replace('|', '\\|').replace('\n', ' ')


def _runtime(spec) -> str:
    if hasattr(spec, 'runtime'):
        return spec.runtime()
    return 'read-only (set at start)' if spec.read_only else 'applies at once'


def lines() -> Iterator[str]:
    yield '# Parameters of the emotion_ros nodes'
    yield ''
    yield ('Generated from the node specs by `python -m emotion_ros.param_docs > docs/parameters.md` (a test keeps '
           'it current); `ros2 param describe <node> <name>` says the same at runtime. Set them in a parameter '
           'file (`config/params.yaml` holds the package\'s deliberate settings; keys `/**/<node>:` match any '
           'namespace), with launch arguments (`ros2 launch emotion_ros live.launch.py --show-args`), or '
           '`--ros-args -p name:=value`. A value outside its range is refused with the reason, at start (exit 2) '
           'and at runtime (`ros2 param set`). "read-only": set at start (parameter file, launch argument, '
           '`--ros-args`); changing it needs a restart.')
    for executable, module, node in NODES:
        try:
            specs = _specs(module)
        except ImportError:
            continue
        yield ''
        yield f'## {node} (`{executable}`)'
        yield ''
        yield '| parameter | default | range / choices | runtime change | description |'
        yield '|---|---|---|---|---|'
        for spec in specs:
            yield (f'| `{spec.name}` | `{spec.default!r}` | {_cell(spec.constraints() or "")} | {_runtime(spec)} '
                   f'| {_cell(spec.description)} |')
    yield ''


def render() -> str:
    return '\n'.join(lines())


def main() -> int:
    sys.stdout.write(render())
    return 0


if __name__ == '__main__':
    sys.exit(main())
