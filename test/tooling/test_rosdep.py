"""The README's rosdep command resolves every dependency key of both packages on Ubuntu 24.04 for Jazzy and Kilted.

The real rosdep (PyPI, pinned) against the rosdistro snapshot in ../shared/ros2-tools/rosdistro, offline: every
file rosdep writes lives in a temporary folder, every URL is file://.
"""
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, require_shared

ROSDEP = Path(sys.executable).parent / 'rosdep'
PATHS = [str(REPO), str(REPO / 'emotion_msgs')]
pytestmark = pytest.mark.slow


def _package_keys(package_xml: Path, distro: str) -> set:
    """Every dependency key of a package.xml whose condition holds for `distro` (catkin_pkg, as rosdep reads it)."""
    from catkin_pkg.package import parse_package
    package = parse_package(str(package_xml))
    package.evaluate_conditions({'ROS_DISTRO': distro, 'ROS_VERSION': '2', 'ROS_PYTHON_VERSION': '3'})
    groups = ('build_depends', 'buildtool_depends', 'build_export_depends', 'buildtool_export_depends',
              'exec_depends', 'test_depends', 'doc_depends')
    return {d.name for g in groups for d in getattr(package, g) if d.evaluated_condition is not False}


@pytest.fixture(scope='module')
def rosdep_for(tmp_path_factory):
    """distro -> environment of a rosdep whose cache was updated (once per distro) from the snapshot."""
    rosdistro = require_shared('ros2-tools', 'rosdistro').resolve()
    if not ROSDEP.exists():
        pytest.skip('rosdep is not installed in this venv (requirements.txt pins it; make setup)')
    import os
    cache = {}

    def env_for(distro):
        if distro not in cache:
            home = tmp_path_factory.mktemp(f'rosdep_{distro}')
            (home / 'sources.list.d').mkdir()
            (home / 'sources.list.d' / '20-default.list').write_text(
                f'yaml file://{rosdistro}/rosdep/base.yaml\nyaml file://{rosdistro}/rosdep/python.yaml\n')
            env = dict(os.environ, ROSDEP_SOURCE_PATH=str(home / 'sources.list.d'),
                       ROSDISTRO_INDEX_URL=f'file://{rosdistro}/index-v4.yaml', ROS_HOME=str(home / 'ros'),
                       http_proxy='http://127.0.0.1:9', https_proxy='http://127.0.0.1:9')  # nothing leaves
            update = _rosdep(env, 'update', '--rosdistro', distro)
            assert update.returncode == 0, update.stdout + update.stderr
            cache[distro] = env
        return cache[distro]
    return env_for


def _rosdep(env, *args):
    return subprocess.run([str(ROSDEP), *args], env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize('distro', ['jazzy', 'kilted'])
def test_readme_rosdep_command_resolves_every_key_of_both_packages(rosdep_for, distro):
    env = rosdep_for(distro)
    common = ['--rosdistro', distro, '--os', 'ubuntu:noble']
    install = _rosdep(env, 'install', '--from-paths', *PATHS, '--ignore-src', '-s', '-y', *common)
    assert install.returncode == 0, install.stdout + install.stderr
    assert 'Cannot locate rosdep definition' not in install.stdout + install.stderr
    assert f'ros-{distro}-rclpy' in install.stdout

    keys = set(_rosdep(env, 'keys', '--from-paths', *PATHS, '--ignore-src', *common).stdout.split())
    declared = (_package_keys(REPO / 'package.xml', distro)
                | _package_keys(REPO / 'emotion_msgs' / 'package.xml', distro)) - {'emotion_msgs', 'emotion_ros'}
    assert keys == declared  # rosdep sees every key (the nested package is found, and satisfied from source)
    resolved = _rosdep(env, 'resolve', *sorted(keys), *common)
    assert resolved.returncode == 0, resolved.stdout + resolved.stderr
    assert resolved.stdout.count('#ROSDEP[') == len(keys), resolved.stdout


def test_rosdep_without_the_nested_path_is_the_reported_failure(rosdep_for):
    """Issue 12 fault 1: the repository root alone leaves emotion_msgs unresolved (why the README names both)."""
    result = _rosdep(rosdep_for('jazzy'), 'install', '--from-paths', str(REPO), '--ignore-src', '-s', '-y',
                     '--rosdistro', 'jazzy', '--os', 'ubuntu:noble')
    assert result.returncode != 0 and 'emotion_msgs' in result.stdout + result.stderr


def test_readme_robot_section_runs_these_commands():
    readme = (REPO / 'README.md').read_text()
    section = readme[readme.index('## Use it on a robot'):]
    section = section[:section.index('\n## ', 5)]
    assert 'rosdep install --from-paths src/emotion_ros src/emotion_ros/emotion_msgs --ignore-src -y' in section
    assert 'python3 -m venv --system-site-packages' in section and 'requirements-robot.txt' in section
    assert 'colcon build --base-paths src/emotion_ros src/emotion_ros/emotion_msgs' in section
    for recipe in ('namespace:=cam1', 'namespace:=cam2', 'hue_bridge:=', 'hue_dry_run:=true'):
        assert recipe in section, recipe
