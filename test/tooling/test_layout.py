"""The package layout's rules, read from the source with `ast` (nothing is imported), so a new import or a move
that breaks one fails here: core/ is ROS-free and imports nothing above it, rclpy stays in nodes/ and the two
CLIs, core/ has no flat folder of more than eight modules, each core package states its rules in its docstring
and keeps to the dependencies that docstring names, docs/architecture.md names every core and node module, and
every console script still points at a function.

Each checker also runs on a small made-up tree that breaks its rule, so none of them can pass by reading nothing.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

REPO = Path(__file__).resolve().parents[2]
PKG = 'emotion_ros'
MAX_MODULES_PER_FOLDER = 8
# Besides nodes/, the only modules that may import rclpy: the command-line programs that spin nodes themselves.
RCLPY_OUTSIDE_NODES = {'emotion_ros.live', 'emotion_ros.dataset_cli'}
# What each core package may import from the rest of core, as its __init__ docstring says (its own subtree and
# core's cross-cutting helper modules are always allowed). A new dependency is a design decision: change the
# docstring and this table together.
CORE_ALLOWED = {
    'frames': (),
    'faces': ('frames',),
    'emotion': ('frames', 'faces'),
    'hue': ('emotion.labels',),
    'hri': ('emotion.labels',),
    'dataset': ('emotion.labels',),
    'viewer': ('frames', 'faces', 'emotion.labels'),
}
_ROS_NAME = re.compile(r'^(rclpy|rcl_.*|rcutils|rmw.*|rosidl.*|ros2.*|launch(_ros|_testing)?|ament_.*|cv_bridge'
                       r'|.*_msgs|.*_interfaces|tf2(_.*)?|message_filters|image_transport)$')


def module_names(root: Path) -> Iterator[Tuple[str, Path]]:
    """(dotted name, path) of every module of the package under `root` (training/ is emotion_ros.training)."""
    for base, prefix in ((root / PKG, PKG), (root / 'training', PKG + '.training')):
        for path in sorted(base.rglob('*.py')):
            parts = list(path.relative_to(base).with_suffix('').parts)
            if parts[-1] == '__init__':
                parts = parts[:-1]
            yield '.'.join([prefix] + parts), path


def imports(path: Path, name: str) -> List[Tuple[int, str]]:
    """(line, absolute module) for every import in the file, wherever it stands (functions, try, TYPE_CHECKING):
    `from a import b` counts as a and a.b (b may be a module); importlib.import_module/__import__ with a literal."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == '__init__.py' else name.rpartition('.')[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:
                anchor = package.split('.')[:len(package.split('.')) - (node.level - 1)]
                base = '.'.join(anchor + ([base] if base else []))
            if base:
                found.append((node.lineno, base))
            found += [(node.lineno, f'{base}.{alias.name}' if base else alias.name) for alias in node.names
                      if alias.name != '*']
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, 'id', '')
            if called in ('import_module', '__import__'):
                found.append((node.lineno, node.args[0].value))
    return found


def _where(root: Path, path: Path, line: int) -> str:
    return f'{path.relative_to(root)}:{line}'


def ros_imports_in_core(root: Path) -> List[str]:
    return [f'{_where(root, path, line)} imports {mod}' for name, path in module_names(root)
            if name.startswith(PKG + '.core') for line, mod in imports(path, name)
            if _ROS_NAME.match(mod.split('.')[0])]


def rclpy_outside_nodes(root: Path) -> List[str]:
    return [f'{_where(root, path, line)} imports {mod}' for name, path in module_names(root)
            if not name.startswith(PKG + '.nodes') and name not in RCLPY_OUTSIDE_NODES
            for line, mod in imports(path, name) if mod.split('.')[0] == 'rclpy']


def upward_imports_from_core(root: Path) -> List[str]:
    """core imports only core: not nodes/, live, dataset_cli, param_docs, training, nor the package's top."""
    return [f'{_where(root, path, line)} imports {mod}' for name, path in module_names(root)
            if name.startswith(PKG + '.core') for line, mod in imports(path, name)
            if mod.startswith(PKG + '.') and not mod.startswith(PKG + '.core')]


def _core_package(module: str) -> Optional[str]:
    """'emotion_ros.core.hue.bridge.v1' -> 'hue'; None for core itself and its helper modules."""
    parts = module.split('.')
    if len(parts) < 3 or parts[:2] != [PKG, 'core']:
        return None
    return parts[2] if parts[2] in CORE_ALLOWED else None


def core_rule_breaks(root: Path) -> List[str]:
    """Imports between core packages that the importing package's CORE_ALLOWED entry does not name."""
    breaks = []
    for name, path in module_names(root):
        own = _core_package(name)
        if not name.startswith(PKG + '.core'):
            continue
        for line, mod in imports(path, name):
            other = _core_package(mod)
            if other is None or other == own:
                continue
            inner = mod[len(f'{PKG}.core.'):]
            if own is None:
                breaks.append(f'{_where(root, path, line)}: core helper imports {mod} (helpers sit below every package)')
            elif not any(inner == a or inner.startswith(a + '.') or a.startswith(inner + '.')
                         for a in CORE_ALLOWED[own]):
                breaks.append(f'{_where(root, path, line)}: core.{own} imports {mod}; '
                              f'allowed: {", ".join(CORE_ALLOWED[own]) or "no other core package"}')
    return breaks


def core_folders(root: Path) -> Iterator[Path]:
    core = root / PKG / 'core'
    yield core
    yield from sorted(p for p in core.rglob('*') if p.is_dir() and p.name != '__pycache__' and any(p.glob('*.py')))


def crowded_core_folders(root: Path) -> List[str]:
    out = []
    for folder in core_folders(root):
        modules = sorted(p.name for p in folder.glob('*.py') if p.name != '__init__.py')
        if len(modules) > MAX_MODULES_PER_FOLDER:
            out.append(f'{folder.relative_to(root)}: {len(modules)} modules ({", ".join(modules)})')
    return out


def core_packages_without_rules(root: Path) -> List[str]:
    """Every folder of core with Python in it is a package whose __init__ docstring says what it may import."""
    out = []
    for folder in core_folders(root):
        init = folder / '__init__.py'
        if not init.is_file():
            out.append(f'{folder.relative_to(root)}: no __init__.py')
            continue
        doc = ast.get_docstring(ast.parse(init.read_text())) or ''
        if 'import' not in doc:
            out.append(f'{init.relative_to(root)}: the docstring does not say what the package may or must not '
                       f'import: {doc!r}')
    return out


def modules_missing_from_architecture_doc(root: Path) -> List[str]:
    """docs/architecture.md names every module of core/ (as `frames/sources.py`) and of nodes/ (`nodes/qos.py`)."""
    doc = (root / 'docs' / 'architecture.md').read_text()
    wanted = [p.relative_to(root / PKG / 'core').as_posix() for p in (root / PKG / 'core').rglob('*.py')]
    wanted += [p.relative_to(root / PKG).as_posix() for p in (root / PKG / 'nodes').glob('*.py')]
    return sorted(w for w in wanted if not w.endswith('__init__.py') and f'`{w}`' not in doc)


def console_script_targets(root: Path) -> Dict[str, str]:
    """Script name -> 'module:function' for every entry of setup.py's CONSOLE_SCRIPTS (read, not run)."""
    tree = ast.parse((root / 'setup.py').read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], 'id', '') == 'CONSOLE_SCRIPTS':
            return dict(tuple(p.strip() for p in entry.split('=')) for entry in ast.literal_eval(node.value))
    return {}


def _top_level_names(path: Path) -> set:
    """Functions defined and names assigned at a module's top (nodes' `main = main_for(Node)`)."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def broken_console_scripts(root: Path) -> List[str]:
    modules = dict(module_names(root))
    out = []
    for script, target in console_script_targets(root).items():
        module, _, func = target.partition(':')
        path = modules.get(module)
        defined = path is not None and func in _top_level_names(path)
        if not defined:
            out.append(f'{script} = {target}: ' + ('no such module' if path is None else f'no function {func}'))
    return out


# --- the real tree ---

def test_no_core_module_imports_ros():
    assert len([n for n, _ in module_names(REPO) if n.startswith(PKG + '.core')]) > 20
    assert ros_imports_in_core(REPO) == []


def test_rclpy_only_in_nodes_and_the_clis():
    assert rclpy_outside_nodes(REPO) == []
    users = {name for name, path in module_names(REPO) if any(m == 'rclpy' or m.startswith('rclpy.')
                                                               for _, m in imports(path, name))}
    assert RCLPY_OUTSIDE_NODES <= users and any(u.startswith(PKG + '.nodes.') for u in users)


def test_core_imports_nothing_above_it():
    assert upward_imports_from_core(REPO) == []


def test_core_packages_import_only_what_their_docstrings_allow():
    packages = {p.name for p in (REPO / PKG / 'core').iterdir() if (p / '__init__.py').is_file()}
    assert packages == set(CORE_ALLOWED), 'a core package was added or removed: give it a CORE_ALLOWED entry'
    assert core_rule_breaks(REPO) == []


def test_no_core_folder_has_more_than_eight_modules():
    assert crowded_core_folders(REPO) == []


def test_every_core_package_states_what_it_owns_and_may_import():
    assert core_packages_without_rules(REPO) == []


def test_architecture_doc_names_every_core_and_node_module():
    """A newcomer finds any module in one hop from docs/architecture.md: a new one gets its line there."""
    assert modules_missing_from_architecture_doc(REPO) == []


def test_every_console_script_names_a_function_that_exists():
    assert len(console_script_targets(REPO)) >= 10
    assert broken_console_scripts(REPO) == []


# --- the checkers on a tree that breaks every rule ---

def _write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _broken_tree(root: Path) -> Path:
    doc = '"""Owns x; may import core.frames."""\n'
    _write(root, 'setup.py', "CONSOLE_SCRIPTS = ['ok = emotion_ros.nodes.n:main', 'gone = emotion_ros.moved:main',"
                             " 'typo = emotion_ros.nodes.n:mian']\n")
    _write(root, 'training/__init__.py', '')
    _write(root, 'training/fit.py', 'import rclpy\n')
    _write(root, 'emotion_ros/__init__.py', '')
    _write(root, 'emotion_ros/nodes/__init__.py', '')
    _write(root, 'emotion_ros/nodes/n.py', 'import rclpy\n\nmian_for = 1\nmain = mian_for\n')
    _write(root, 'emotion_ros/live.py', 'from rclpy.node import Node\n')
    _write(root, 'emotion_ros/core/__init__.py', '"""Core; imports nothing above it."""\n')
    _write(root, 'emotion_ros/core/param_spec.py', 'from emotion_ros.core.frames import sources\n')
    for pkg in CORE_ALLOWED:
        _write(root, f'emotion_ros/core/{pkg}/__init__.py', doc)
    _write(root, 'emotion_ros/core/hri/__init__.py', '"""No word on dependencies."""\n')
    _write(root, 'emotion_ros/core/viewer/static/app.js', '')
    _write(root, 'emotion_ros/core/dataset/__init__.py', '')
    _write(root, 'emotion_ros/core/emotion/late.py', 'def f():\n    import rclpy.node\n')
    _write(root, 'emotion_ros/core/emotion/typed.py', 'from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n'
                                                      '    from sensor_msgs.msg import Image\n')
    _write(root, 'emotion_ros/core/emotion/dynamic.py', 'import importlib\nimportlib.import_module("rclpy")\n')
    _write(root, 'emotion_ros/core/faces/up.py', 'from ...nodes import n\nfrom emotion_ros import live\n')
    _write(root, 'emotion_ros/core/faces/sideways.py', 'from ..emotion.model import load\n'
                                                       'from emotion_ros.core.frames.encoding import as_bgr\n')
    _write(root, 'emotion_ros/core/hue/peek.py', 'from emotion_ros.core.emotion.labels import x\n'
                                                 'from emotion_ros.core.emotion import pipeline\n')
    _write(root, 'emotion_ros/core/loose/a.py', '')
    for i in range(MAX_MODULES_PER_FOLDER + 1):
        _write(root, f'emotion_ros/core/frames/m{i}.py', '')
    return root


def test_checkers_report_each_broken_rule(tmp_path):
    root = _broken_tree(tmp_path)
    assert sorted(ros_imports_in_core(root)) == [
        'emotion_ros/core/emotion/dynamic.py:2 imports rclpy',
        'emotion_ros/core/emotion/late.py:2 imports rclpy.node',
        'emotion_ros/core/emotion/typed.py:3 imports sensor_msgs.msg',
        'emotion_ros/core/emotion/typed.py:3 imports sensor_msgs.msg.Image']
    assert rclpy_outside_nodes(root) == [
        'emotion_ros/core/emotion/dynamic.py:2 imports rclpy', 'emotion_ros/core/emotion/late.py:2 imports rclpy.node',
        'training/fit.py:1 imports rclpy']
    assert sorted(upward_imports_from_core(root)) == [
        'emotion_ros/core/faces/up.py:1 imports emotion_ros.nodes', 'emotion_ros/core/faces/up.py:1 imports emotion_ros.nodes.n',
        'emotion_ros/core/faces/up.py:2 imports emotion_ros.live']
    breaks = core_rule_breaks(root)
    assert any(b.startswith('emotion_ros/core/faces/sideways.py:1: core.faces imports emotion_ros.core.emotion.model')
               for b in breaks)
    assert any(b.startswith('emotion_ros/core/hue/peek.py:2: core.hue imports emotion_ros.core.emotion.pipeline')
               for b in breaks)
    assert any(b.startswith('emotion_ros/core/param_spec.py:1: core helper imports') for b in breaks)
    assert not any('sideways.py:2' in b or 'peek.py:1' in b for b in breaks), breaks
    assert [c.split(':')[0] for c in crowded_core_folders(root)] == ['emotion_ros/core/frames']
    assert sorted(core_packages_without_rules(root)) == [
        'emotion_ros/core/dataset/__init__.py: the docstring does not say what the package may or must not import: \'\'',
        'emotion_ros/core/hri/__init__.py: the docstring does not say what the package may or must not import: '
        "'No word on dependencies.'",
        'emotion_ros/core/loose: no __init__.py']
    _write(root, 'docs/architecture.md', '`frames/m0.py` and `nodes/n.py`, frames/m1.py without quotes\n')
    missing = modules_missing_from_architecture_doc(root)
    assert 'frames/m0.py' not in missing and 'nodes/n.py' not in missing
    assert {'frames/m1.py', 'emotion/late.py', 'param_spec.py'} <= set(missing)
    assert broken_console_scripts(root) == ['gone = emotion_ros.moved:main: no such module',
                                            'typo = emotion_ros.nodes.n:mian: no function mian']
