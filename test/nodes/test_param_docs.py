"""docs/parameters.md is generated from the node specs and current (regenerate: see its first line)."""
import re

from conftest import REPO


def test_parameters_doc_is_current():
    from emotion_ros.param_docs import render
    assert (REPO / 'docs' / 'parameters.md').read_text() == render(), \
        'docs/parameters.md is stale: python -m emotion_ros.param_docs > docs/parameters.md'


def test_every_node_script_with_specs_is_documented():
    from emotion_ros.param_docs import NODES
    scripts = dict(re.findall(r"'(\w+) = (emotion_ros[\w.]+):main'", (REPO / 'setup.py').read_text()))
    documented = {module for _, module, _ in NODES}
    for script, module in scripts.items():
        if module.startswith('emotion_ros.nodes.'):
            assert module in documented, script
