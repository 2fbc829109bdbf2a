"""LiteRT latency of an emotion model per face: `python -m emotion_ros.training.latency [MODEL]`."""
import argparse
import json
import time

import numpy as np

from emotion_ros.core.emotion.model import EmotionModel, default_model_path


def measure(model_path, threads=(1, 2), batches=(1, 32), seconds: float = 2.0) -> list:
    """Median-free, simple: mean ms per face over repeated predict() calls after a warm-up."""
    crops = np.random.default_rng(0).integers(0, 256, (max(batches), 48, 48), dtype=np.uint8)
    rows = []
    for t in threads:
        for b in batches:
            model = EmotionModel(model_path, num_threads=t, max_batch=max(b, 1))
            x = crops[:b]
            for _ in range(5):
                model.predict(x)
            n, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                model.predict(x)
                n += 1
            dt = (time.perf_counter() - start) / (n * b)
            rows.append({'threads': t, 'batch': b, 'ms_per_face': round(dt * 1e3, 4),
                         'faces_per_s': round(1 / dt)})
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument('model', nargs='?', default=str(default_model_path()))
    p.add_argument('--seconds', type=float, default=2.0)
    args = p.parse_args(argv)
    for row in measure(args.model, seconds=args.seconds):
        print(json.dumps(row))


if __name__ == '__main__':
    main()
