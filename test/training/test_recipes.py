"""The committed training recipes run as written: the GPU teacher script's exact command line, at smoke size on
the CPU, over synthetic stand-ins for the three shared sources (so it needs neither ../shared nor a GPU)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from test_sources import write_people_npz
from test_training import write_synthetic_npz

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gpu_teacher_recipe_runs_at_smoke_size_on_the_cpu(tmp_path):
    data = tmp_path / 'datasets'
    for sub in ('fer2013', 'kdef_dev', 'muxspace'):
        (data / sub).mkdir(parents=True)
    write_synthetic_npz(data / 'fer2013' / 'fer2013_trainval.npz', n=600)
    write_people_npz(data / 'kdef_dev' / 'kdef_dev.npz', with_contempt=False)
    write_people_npz(data / 'muxspace' / 'muxspace_fe.npz', people=30, per_person=6)
    run = tmp_path / 'teacher'
    env = dict(os.environ, SMOKE='1', DATASETS=str(data), EMOTION_TRAIN=f'{sys.executable} -m emotion_ros.training.cli')
    out = subprocess.run([str(REPO / 'training' / 'recipes' / 'gpu_teacher.sh'), str(run)], env=env,
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    metrics = json.loads((run / 'metrics.json').read_text())
    assert metrics['epochs_run'] == 2 and metrics['select_on'] == ['fer2013', 'kdef']
    assert set(metrics['sources']) == {'fer2013', 'kdef', 'mux'}
    assert (run / 'best.keras').stat().st_size > 0
