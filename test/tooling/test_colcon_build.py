"""`colcon build` (the route a ROS 2 install takes) builds both packages of this repository.

The repository root is itself a package, so colcon does not descend into it: emotion_msgs is named as a
second base path, exactly as the README documents.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


@pytest.mark.slow
def test_colcon_builds_both_packages(tmp_path, ros_env):
    colcon = VENV_BIN / 'colcon'
    if not colcon.exists():
        pytest.skip('colcon is not installed in this environment (make setup installs it)')
    env = dict(ros_env, AMENT_PREFIX_PATH=str(Path(sys.prefix)), COLCON_HOME=str(tmp_path / 'colcon_home'),
               PATH=f'{VENV_BIN}{os.pathsep}{os.environ["PATH"]}')
    cmd = [str(colcon), '--log-base', str(tmp_path / 'log'), 'build',
           '--base-paths', str(REPO), str(REPO / 'emotion_msgs'),
           '--build-base', str(tmp_path / 'build'), '--install-base', str(tmp_path / 'install'),
           '--cmake-args', f'-DCMAKE_PROJECT_INCLUDE={REPO / "cmake" / "fix_wheel_paths.cmake"}',
           '-DBUILD_TESTING=OFF', f'-DPython3_EXECUTABLE={sys.executable}']
    result = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert 'Summary: 2 packages finished' in result.stdout, result.stdout[-2000:]

    install = tmp_path / 'install'
    assert (install / 'emotion_ros' / 'share' / 'emotion_ros' / 'package.xml').exists()
    assert (install / 'emotion_ros' / 'share' / 'ament_index' / 'resource_index' / 'packages' / 'emotion_ros').exists()
    assert list((install / 'emotion_ros' / 'share' / 'emotion_ros' / 'launch').glob('*.launch.py')) or \
        not list((REPO / 'launch').glob('*.launch.py'))
    assert (install / 'emotion_ros' / 'lib' / 'emotion_ros').is_dir()
    msgs_site = install / 'emotion_msgs' / 'lib' / f'python{sys.version_info.major}.{sys.version_info.minor}' / 'site-packages'
    probe = subprocess.run(
        [sys.executable, '-c', 'import emotion_msgs.msg as m, sys; print(m.EmotionArray.__module__, m.__file__)'],
        env=dict(env, PYTHONPATH=str(msgs_site),
                 LD_LIBRARY_PATH=f'{install / "emotion_msgs" / "lib"}{os.pathsep}{os.environ.get("LD_LIBRARY_PATH", "")}'),
        capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert probe.returncode == 0, probe.stderr
    assert str(install) in probe.stdout

    # The node scripts run with the interpreter that ran colcon (README: `python -m colcon build` in the venv).
    script = install / 'emotion_ros' / 'lib' / 'emotion_ros' / 'camera_node'
    assert script.read_text().splitlines()[0] == f'#!{sys.executable}'
    # `ros2 launch` finds the package in the colcon install (not in the venv's own ament-index entries).
    ros2 = VENV_BIN / 'ros2'
    if ros2.exists():
        ament = os.pathsep.join([str(install / 'emotion_ros'), str(install / 'emotion_msgs'), str(Path(sys.prefix))])
        tool_env = dict(env, AMENT_PREFIX_PATH=ament)
        prefix = subprocess.run([str(ros2), 'pkg', 'prefix', 'emotion_ros'], env=tool_env, capture_output=True,
                                text=True, timeout=120)
        assert prefix.stdout.strip() == str(install / 'emotion_ros'), prefix.stdout + prefix.stderr
        show = subprocess.run([str(ros2), 'launch', 'emotion_ros', 'live.launch.py', '--show-args'], env=tool_env,
                              capture_output=True, text=True, timeout=120)
        assert show.returncode == 0 and "'hue_bridge':" in show.stdout, show.stdout + show.stderr
    shutil.rmtree(tmp_path / 'build', ignore_errors=True)
