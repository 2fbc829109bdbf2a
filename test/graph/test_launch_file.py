"""launch/live.launch.py stays consistent with the package without running it (test_launch.py runs it): every
executable is a console script, the parameter file is namespace-proof and names only declared parameters of
launched nodes, and every argument is declared with a description."""
import ast
import importlib
import re

import yaml

from conftest import REPO

LAUNCH = REPO / 'launch' / 'live.launch.py'
MODULES = {'camera': 'camera_node', 'face_detector': 'face_detector_node',
           'emotion_classifier': 'emotion_classifier_node', 'hue_actuator': 'hue_actuator_node',
           'dataset_recorder': 'dataset_recorder_node'}


def _nodes():
    """(executable, name) of every Node(executable=..., name=...) and _node(context, executable, name) call."""
    for call in ast.walk(ast.parse(LAUNCH.read_text())):
        if not isinstance(call, ast.Call):
            continue
        func = getattr(call.func, 'id', None)
        if func == 'Node':
            kw = {k.arg: k.value for k in call.keywords if k.arg}
            if not isinstance(kw['executable'], ast.Constant):
                continue  # inside _node()
            yield ast.literal_eval(kw['executable']), ast.literal_eval(kw['name'])
        elif func == '_node':
            yield ast.literal_eval(call.args[1]), ast.literal_eval(call.args[2])


def _param_blocks():
    params = yaml.safe_load((REPO / 'config' / 'params.yaml').read_text())
    for key, block in params.items():
        assert key.startswith('/**/'), f'{key}: use /**/{key} so the file applies in any namespace'
        yield key[len('/**/'):], block['ros__parameters']


def test_launch_executables_are_console_scripts_and_param_blocks_name_launched_nodes():
    scripts = dict(re.findall(r"'(\w+) = (emotion_ros[\w.]+:\w+)'", (REPO / 'setup.py').read_text()))
    nodes = list(_nodes())
    assert {'camera_node', 'face_detector_node', 'emotion_classifier_node', 'hue_actuator_node',
            'dataset_recorder_node'} <= {n[0] for n in nodes}
    for executable, _ in nodes:
        assert executable in scripts, executable
    names = {n[1] for n in nodes}
    for name, _ in _param_blocks():
        assert name in names, f'params.yaml block {name} matches no launched node'


def test_params_file_holds_declared_non_default_values_only():
    for node_name, block in _param_blocks():
        module = importlib.import_module(f'emotion_ros.nodes.{MODULES[node_name]}')
        specs = {s.name: s for s in module.SPECS}
        unknown = set(block) - set(specs)
        assert not unknown, f'{node_name}: {unknown} not declared'
        for name, value in block.items():
            assert specs[name].reason_invalid(value) is None, name
            assert specs[name].coerce(value) != specs[name].default, \
                f'{node_name}.{name}: {value!r} is the default; the file holds deliberate settings only'


def test_every_launch_argument_is_declared_with_a_description_and_overrides_only_when_given():
    text = LAUNCH.read_text()
    tree = ast.parse(text)
    arguments = next(n.value for n in tree.body if isinstance(n, ast.Assign)
                     and getattr(n.targets[0], 'id', None) == 'ARGUMENTS')
    names = [ast.literal_eval(k) for k in arguments.keys]
    assert {'params', 'namespace', 'source', 'detector', 'hue', 'hue_bridge', 'hue_dry_run', 'view', 'hri'} <= set(names)
    for value in arguments.values:
        default, description = value.elts
        assert isinstance(description, ast.Constant) and len(description.value) > 15
    # Arguments that set a node parameter default to '' (not given): the parameter file decides.
    for name in ('source', 'fps', 'loop', 'detector', 'model', 'calibration', 'hue_bridge', 'hue_dry_run',
                 'dataset_dir'):
        default = arguments.values[names.index(name)].elts[0]
        assert ast.literal_eval(default) == '', name
    assert 'face_detector_backend' not in text  # crop geometry travels with FaceArray.crop_margin
