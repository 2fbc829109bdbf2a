"""launch/live.launch.py (for real ROS installs; `launch` is not installable here) stays consistent with the
package: every executable is a console script, every node name has a block in config/params.yaml, and every
parameter it sets exists on that node."""
import ast
import importlib
import re

import yaml

from conftest import REPO

LAUNCH = REPO / 'launch' / 'live.launch.py'


def _nodes():
    tree = ast.parse(LAUNCH.read_text())
    for call in ast.walk(tree):
        if isinstance(call, ast.Call) and getattr(call.func, 'id', None) == 'Node':
            kw = {k.arg: k.value for k in call.keywords if k.arg}
            yield ast.literal_eval(kw['executable']), ast.literal_eval(kw['name']), kw


def test_launch_executables_are_console_scripts_and_names_have_params():
    scripts = dict(re.findall(r"'(\w+) = (emotion_ros[\w.]+:\w+)'", (REPO / 'setup.py').read_text()))
    params = yaml.safe_load((REPO / 'config' / 'params.yaml').read_text())
    nodes = list(_nodes())
    assert {'camera_node', 'face_detector_node', 'emotion_classifier_node'} <= {n[0] for n in nodes}
    for executable, name, kw in nodes:
        assert executable in scripts, executable
        assert name in params and 'ros__parameters' in params[name], name


def test_params_file_keys_are_declared_parameters():
    params = yaml.safe_load((REPO / 'config' / 'params.yaml').read_text())
    modules = {'camera': 'camera_node', 'face_detector': 'face_detector_node',
               'emotion_classifier': 'emotion_classifier_node', 'hue_actuator': 'hue_actuator_node',
               'dataset_recorder': 'dataset_recorder_node'}
    for node_name, block in params.items():
        module = importlib.import_module(f'emotion_ros.nodes.{modules[node_name]}')
        declared = {s.name for s in module.SPECS}
        unknown = set(block['ros__parameters']) - declared
        assert not unknown, f'{node_name}: {unknown} not declared'
        for spec in module.SPECS:
            if spec.name in block['ros__parameters']:
                assert spec.reason_invalid(block['ros__parameters'][spec.name]) is None, spec.name


def test_launch_default_detector_is_the_package_default():
    from emotion_ros.core.face_detection import DEFAULT_BACKEND
    assert f"DeclareLaunchArgument('detector', default_value='{DEFAULT_BACKEND}'" in LAUNCH.read_text()
