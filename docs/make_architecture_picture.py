"""Draw docs/architecture.png from the code as it stands: the programs, the nodes, core's packages with their
modules, what flows between them, and which core packages each node and core package imports (read with `ast`).

    .venv/bin/python docs/make_architecture_picture.py

Rerun it after adding, moving or removing a module; nothing of the project is imported or run.
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Set

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / 'emotion_ros'
CORE = PKG / 'core'
OUT = REPO / 'docs' / 'architecture.png'

# Left to right in the order the data flows; each node stands above the core package it translates for.
CORE_ORDER = ['frames', 'faces', 'emotion', 'hri', 'hue', 'viewer', 'dataset']
NODES = [  # (module, console script, the core package below it)
    ('camera_node', 'camera_node', 'frames'),
    ('face_detector_node', 'face_detector_node', 'faces'),
    ('emotion_classifier_node', 'emotion_classifier_node', 'emotion'),
    ('hri_publisher_node', 'hri_publisher_node', 'hri'),
    ('hue_actuator_node', 'hue_actuator_node', 'hue'),
    ('viewer_node', 'emotion_viewer', 'viewer'),
    ('dataset_recorder_node', 'dataset_recorder_node', 'dataset'),
]
TOPICS = [  # (from node, to node, label, arc)
    ('camera_node', 'face_detector_node', 'image_raw\n(frame)', 0.0),
    ('face_detector_node', 'emotion_classifier_node', 'faces\n(boxes, ids)', 0.0),
    ('emotion_classifier_node', 'hri_publisher_node', 'emotions\n(scores)', 0.0),
    ('emotion_classifier_node', 'hue_actuator_node', '', -0.28),
    ('emotion_classifier_node', 'viewer_node', 'emotions, image_annotated', -0.3),
]
OUTPUTS = {'hri_publisher_node': '/humans/faces/* (REP-155)', 'hue_actuator_node': 'light state -> Hue bridge',
           'viewer_node': 'web page on 127.0.0.1:8080', 'dataset_recorder_node': 'crops -> FaceLabeler folder'}
CORE_FLOW = [  # what one core package hands the next, inside a node or emotion_live
    ('frames', 'faces', 'frame', 0.0), ('faces', 'emotion', 'boxes\n-> crops', 0.0), ('emotion', 'hri', 'scores', 0.0),
    ('emotion', 'hue', 'scores -> mood', 0.3), ('emotion', 'viewer', 'scores, boxes', 0.3),
]
PROGRAMS = [('emotion_live', 'live.py: the graph in one process', 2.2), ('ros2 launch', 'launch/live.launch.py', 6.2),
            ('emotion-dataset', 'dataset_cli.py', 10.2), ('emotion-train', 'training/ = emotion_ros.training', 14.2),
            ('bench/, test/', 'measure it, check it', 18.2)]
COLOURS = {'program': '#f3e6c8', 'node': '#d5e5f5', 'core': '#dcefd9', 'helpers': '#eeeeee'}


def imported_core_packages(path: Path) -> Set[str]:
    """Core packages (or 'helpers' for core's own modules) a file imports."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split('.')
            if parts[:2] == ['emotion_ros', 'core'] and len(parts) > 2:
                found.add(parts[2] if parts[2] in CORE_ORDER else 'helpers')
    return found


def package_imports(package: Path) -> Set[str]:
    return set().union(*(imported_core_packages(p) for p in package.rglob('*.py'))) - {package.name}


def module_lines(package: Path) -> list:
    rows = []
    for path in sorted(package.rglob('*.py')):
        if path.name == '__init__.py':
            continue
        rel = path.relative_to(package).as_posix()[:-3]
        rows.append(f'{rel}  {len(path.read_text().splitlines())}')
    if (package / 'static').is_dir():
        rows.append('static/ ' + ', '.join(sorted(p.name for p in (package / 'static').iterdir())))
    return rows


def box(ax, x, y, w, h, kind, title, body='', size=9):
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle='round,pad=0.02,rounding_size=0.12',
                                fc=COLOURS[kind], ec='#555555', lw=1))
    ax.text(x, y + h / 2 - 0.12, title, ha='center', va='top', fontsize=size, fontweight='bold')
    if body:
        ax.text(x - w / 2 + 0.12, y + h / 2 - 0.45, body, ha='left', va='top', fontsize=size - 1.5,
                family='monospace', linespacing=1.25)


def arrow(ax, a, b, label='', colour='#1f4e79', style='-|>', rad=0.0, lw=1.6, ls='-', label_at=0.5, dy=0.0):
    ax.add_patch(FancyArrowPatch(a, b, arrowstyle=style, mutation_scale=12, color=colour, lw=lw, ls=ls,
                                 connectionstyle=f'arc3,rad={rad}', shrinkA=2, shrinkB=2))
    if label:
        ax.text(a[0] + (b[0] - a[0]) * label_at, a[1] + (b[1] - a[1]) * label_at + dy, label, ha='center',
                va='center', fontsize=7.5, color=colour, bbox=dict(fc='white', ec='none', pad=0.5, alpha=0.9))


def column(name: str) -> float:
    return 1.45 + CORE_ORDER.index(name) * 2.87


def main() -> None:
    fig, ax = plt.subplots(figsize=(20, 10.3))
    ax.set_xlim(0, 20.3)
    ax.set_ylim(1.55, 11.9)
    ax.axis('off')
    ax.text(0.1, 11.7, 'emotion_ros: layers, packages and what flows between them', fontsize=15, fontweight='bold',
            va='top')
    ax.text(0.1, 11.25, 'Each layer imports only the layers below it (test/tooling/test_layout.py checks). Blue arrows: '
            'data. Under each core package: the other core packages it imports (read from the code).',
            fontsize=9.5, va='top', color='#333333')

    ax.text(0.1, 10.6, 'programs', fontsize=10, style='italic', color='#7a5c00')
    for title, body, x in PROGRAMS:
        box(ax, x, 10.15, 3.5, 0.75, 'program', title, body, size=9)

    ax.add_patch(FancyBboxPatch((0.05, 6.35), 20.15, 3.1, boxstyle='round,pad=0.02', fc='none', ec='#7aa6d6', ls='--'))
    ax.text(0.15, 9.3, 'emotion_ros/nodes/  (rclpy: each node declares its parameters and translates topics <-> core)',
            fontsize=10, style='italic', color='#1f4e79', va='top')
    shared = sorted(p.stem for p in (PKG / 'nodes').glob('*.py') if p.stem not in {n[0] for n in NODES}
                    and p.stem != '__init__')
    ax.text(20.1, 9.3, 'shared by the nodes: ' + ', '.join(shared), fontsize=8, family='monospace', color='#1f4e79',
            ha='right', va='top')
    where, node_y = {}, 7.6
    for module, script, below in NODES:
        x = column(below)
        box(ax, x, node_y, 2.3, 0.62, 'node', script, f'nodes/{module}.py' if script != module else '', size=8.5)
        where[module] = x
        ax.text(x + 0.3 * (module == 'dataset_recorder_node'), node_y - 0.42, OUTPUTS.get(module, ''), ha='center',
                va='top', fontsize=7.5, color='#8a3b00')
    for a, b, label, rad in TOPICS:
        xa, xb = where[a], where[b]
        if rad:
            arrow(ax, (xa + 0.6, node_y + 0.32), (xb - 0.3, node_y + 0.32), label, rad=rad, label_at=0.62,
                  dy=0.5 + 0.35 * (xb - xa > 8))
        else:
            arrow(ax, (xa + 1.16, node_y), (xb - 1.16, node_y), label, dy=-0.62)
    xd, xr, low = where['face_detector_node'], where['dataset_recorder_node'], node_y - 1.0
    ax.plot([xd - 0.5, xd - 0.5, xr - 0.8], [node_y - 0.32, low, low], color='#1f4e79', lw=1.6)
    arrow(ax, (xr - 0.8, low), (xr - 0.8, node_y - 0.32))
    ax.text((xd + xr) / 2, low, 'image + faces (a capture request saves the largest face)', ha='center', va='center',
            fontsize=7.5, color='#1f4e79', bbox=dict(fc='white', ec='none', pad=0.5))

    ax.add_patch(FancyBboxPatch((0.05, 1.65), 20.15, 4.45, boxstyle='round,pad=0.02', fc='none', ec='#5c9c55', ls='--'))
    ax.text(0.15, 5.95, 'emotion_ros/core/  (ROS-free, one package per domain)', fontsize=10, style='italic',
            color='#2d6a27', va='top')
    top, width = 4.9, 2.35
    for name in CORE_ORDER:
        x = column(name)
        rows = module_lines(CORE / name)
        h = 0.55 + 0.2 * len(rows)
        box(ax, x, top - h / 2, width, h, 'core', f'{name}/', '\n'.join(rows), size=9)
        deps = sorted(package_imports(CORE / name) - {'helpers'})
        ax.text(x, top - h - 0.1, 'imports: ' + (', '.join(deps) or 'none'), ha='center', va='top', fontsize=7.5,
                color='#555555')
    for a, b, label, rad in CORE_FLOW:
        xa, xb = column(a), column(b)
        if rad:
            arrow(ax, (xa + 0.5, top + 0.05), (xb - 0.4, top + 0.05), label, rad=-rad, label_at=0.72,
                  dy=0.32 + 0.3 * (xb - xa > 7))
        else:
            arrow(ax, (xa + 1.18, top - 0.3), (xb - 1.18, top - 0.3), label, dy=-0.45)
    helper_rows = [f'{p.stem}  {len(p.read_text().splitlines())}' for p in sorted(CORE.glob('*.py'))
                   if p.name != '__init__.py']
    box(ax, (column('viewer') + column('dataset')) / 2, 2.45, 5.4, 0.75, 'helpers', 'core helpers (used by every package, import none)',
        '   '.join(helper_rows), size=8.5)

    fig.savefig(OUT, dpi=90, bbox_inches='tight', facecolor='white')
    print(f'wrote {OUT.relative_to(REPO)}')


if __name__ == '__main__':
    main()
