"""`emotion-train fit`: train a Keras model on a shared-format npz, select on val, write a run folder.

Run folder: command.txt (exact command and seed), config.json, checkpoints/ (last.keras + state.json
after every epoch, for --resume), best.keras (best val accuracy), history.json, metrics.json,
curves.png, confusion_val.png.
"""
import json
import math
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from . import data as D
from . import sources as S
from .metrics import summarize
from .plots import plot_confusion, plot_curves


def _atomic_json(obj, path):
    tmp = f'{path}.tmp'
    with open(tmp, 'w') as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


def _atomic_save_model(model, path):
    tmp = str(path).replace('.keras', '.tmp.keras')
    model.save(tmp)
    os.replace(tmp, path)


def _callbacks(keras):
    class BudgetSchedule(keras.callbacks.Callback):
        """Warm-up then cosine decay over whichever runs out first: the step count or the wall-clock
        budget. A contended machine then still ends at a low learning rate, on time."""

        def __init__(self, peak_lr, total_steps, budget_s, state, warmup=0.03, floor=0.01):
            super().__init__()
            self.peak, self.total, self.budget = peak_lr, total_steps, budget_s
            self.warmup, self.floor = warmup, floor
            self.step = state.get('step', 0)
            self.elapsed0 = state.get('elapsed_s', 0.0)
            self.t0 = time.monotonic()

        def elapsed(self):
            return self.elapsed0 + time.monotonic() - self.t0

        def progress(self):
            p = self.step / max(self.total, 1)
            if self.budget:
                p = max(p, self.elapsed() / self.budget)
            return p

        def on_train_batch_begin(self, batch, logs=None):
            p = self.progress()
            if p >= 1.0:
                self.model.stop_training = True
                p = 1.0
            if p < self.warmup:
                f = p / self.warmup
            else:
                f = 0.5 * (1 + math.cos(math.pi * (p - self.warmup) / (1 - self.warmup)))
            self.model.optimizer.learning_rate.assign(self.peak * max(f, self.floor))

        def on_train_batch_end(self, batch, logs=None):
            self.step += 1

    class Checkpointer(keras.callbacks.Callback):
        """After every epoch: every validation source scored, last.keras + state.json (resumable), and
        best.keras on a new best selection score (the mean accuracy over the `select` sources)."""

        def __init__(self, run_dir, schedule, state, val_sets, select, primary, keep_epochs=False):
            super().__init__()
            self.run, self.schedule, self.keep_epochs = Path(run_dir), schedule, keep_epochs
            self.val_sets, self.select, self.primary = val_sets, select, primary
            self.history = state.get('history', {})
            self.best = state.get('best_score', state.get('best_val_accuracy', -1.0))
            self.best_epoch = state.get('best_epoch', 0)

        def on_epoch_end(self, epoch, logs=None):
            logs = dict(logs or {})
            logs['lr'] = float(self.model.optimizer.learning_rate.numpy())
            logs['elapsed_s'] = self.schedule.elapsed()
            for name, (x, y) in self.val_sets.items():
                pred = self.model.predict(x, batch_size=256, verbose=0).argmax(1)
                logs[f'val_{name}_accuracy'] = float((pred == y).mean())
                logs[f'val_{name}_macro_f1'] = summarize(y, pred, range(self.model.output_shape[-1]))['macro_f1']
            if self.primary in self.val_sets:
                logs['val_accuracy'] = logs[f'val_{self.primary}_accuracy']
            logs['select_score'] = float(np.mean([logs[f'val_{n}_accuracy'] for n in self.select]))
            for k, v in logs.items():
                self.history.setdefault(k, []).append(float(v))
            val = logs['select_score']
            from .models import as_float32
            exported = None
            if val > self.best:
                self.best, self.best_epoch = val, epoch + 1
                exported = as_float32(self.model)
                _atomic_save_model(exported, self.run / 'best.keras')
            if self.keep_epochs:
                _atomic_save_model(exported or as_float32(self.model), self.run / 'epochs' / f'epoch_{epoch + 1:03d}.keras')
            _atomic_save_model(self.model, self.run / 'checkpoints' / 'last.keras')
            _atomic_json({'epoch': epoch + 1, 'step': self.schedule.step, 'elapsed_s': self.schedule.elapsed(),
                          'best_score': self.best, 'best_epoch': self.best_epoch, 'select_on': list(self.select),
                          'history': self.history}, self.run / 'checkpoints' / 'state.json')
            _atomic_json(self.history, self.run / 'history.json')
            print(f'epoch {epoch + 1}: ' + ' '.join(f'{k}={v:.4g}' for k, v in logs.items())
                  + f' | best selection score {self.best:.4f} (epoch {self.best_epoch})', flush=True)

    class Progress(keras.callbacks.Callback):
        """tqdm bar per epoch (sparse updates when the output is a log file)."""

        def __init__(self, steps, epochs):
            super().__init__()
            self.steps, self.epochs, self.bar = steps, epochs, None

        def on_epoch_begin(self, epoch, logs=None):
            from tqdm import tqdm
            self.bar = tqdm(total=self.steps, desc=f'epoch {epoch + 1}/{self.epochs}', unit='batch',
                            mininterval=1 if sys.stderr.isatty() else 30, leave=False)

        def on_train_batch_end(self, batch, logs=None):
            self.bar.update(1)
            if logs and batch % 20 == 0:
                self.bar.set_postfix(loss=f"{logs.get('loss', 0):.3f}", acc=f"{logs.get('accuracy', 0):.3f}")

        def on_epoch_end(self, epoch, logs=None):
            self.bar.close()

    return BudgetSchedule, Checkpointer, Progress


def _limit(ds, n, seed):
    if not n or n >= len(ds):
        return ds
    idx = np.sort(np.random.default_rng(seed).choice(len(ds), size=n, replace=False))
    return ds.subset(idx)


def run_fit(args) -> dict:
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
    import keras
    import tensorflow as tf

    from .models import build_model

    run = Path(args.run_dir)
    ckdir = run / 'checkpoints'
    state_path = ckdir / 'state.json'
    if state_path.exists() and not args.resume:
        raise SystemExit(f'{run} already holds a checkpoint: pass --resume to continue it or choose a new --run-dir')
    if args.resume and not state_path.exists():
        raise SystemExit(f'--resume: no checkpoint in {ckdir}')
    ckdir.mkdir(parents=True, exist_ok=True)
    command = shlex.join([os.path.basename(sys.argv[0])] + sys.argv[1:])
    with open(run / 'command.txt', 'a') as f:
        f.write(f'{time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())} seed={args.seed} {command}\n')
    config = {k: v for k, v in vars(args).items() if k not in ('func', 'teacher_probs')}
    _atomic_json(config, run / 'config.json')

    keras.utils.set_random_seed(args.seed)
    precision = resolve_precision(getattr(args, 'precision', 'float32'))
    if getattr(args, 'init_from', None) and precision != 'float32' and not args.resume:
        if getattr(args, 'precision', '') != 'auto':
            raise SystemExit(f'--init-from trains in float32 only (--precision {precision} given): ' + INIT_FP32_WHY)
        print(f'precision: float32, not {precision}: {INIT_FP32_WHY}', flush=True)
        precision = 'float32'
    keras.mixed_precision.set_global_policy(precision)
    print(f'precision: {precision}', flush=True)
    if args.threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(args.threads)
            tf.config.threading.set_inter_op_parallelism_threads(args.threads)
        except RuntimeError as exc:   # TensorFlow already ran in this process (e.g. a second run in one test session)
            print(f'threads: keeping the current TensorFlow thread pools ({exc})', flush=True)

    split_seed = args.seed if args.split_seed is None else args.split_seed
    teacher_probs = getattr(args, 'teacher_probs', None)
    sources = S.load_sources(args.data, args.holdout, split_seed, args.val_subjects, args.subject_seed,
                             teacher=teacher_probs)
    primary = sources[0]
    primary.train = _limit(primary.train, args.limit_train, args.seed)
    for src in sources:
        if src.val is not None:
            src.val = _limit(src.val, args.limit_val, args.seed)
    hold = _limit(primary.holdout, args.limit_val, args.seed) if primary.holdout is not None else None
    classes = primary.train.classes
    (run / 'labels.txt').write_text('\n'.join(classes) + '\n')
    (run / 'best.labels.txt').write_text('\n'.join(classes) + '\n')
    if args.keep_epochs:
        (run / 'epochs').mkdir(exist_ok=True)
        (run / 'epochs' / 'labels.txt').write_text('\n'.join(classes) + '\n')
    val_sets = {s.name: (s.val.images[..., None].astype(np.float32), s.val.labels) for s in sources if s.val is not None}
    select = [n.strip() for n in args.select_on.split(',')] if args.select_on else list(val_sets)
    unknown = [n for n in select if n not in val_sets]
    if unknown or not select:
        raise SystemExit(f'--select-on {args.select_on!r}: no validation set named {unknown}; have {sorted(val_sets)}')
    split_info = primary.info if len(sources) == 1 else {s.name: s.info | {'weight': s.weight} for s in sources}
    for s in sources:
        shown = {k: (len(v) if k == 'val_subjects' else v) for k, v in s.info.items()}
        print(f'data {s.name}: {shown} weight {s.weight}', flush=True)
    print(f'selecting best.keras on the mean accuracy of {select}', flush=True)

    t_weight = getattr(args, 'teacher_weight', 0.0) if teacher_probs is not None else 0.0
    images = np.concatenate([s.train.images for s in sources])
    targets = np.concatenate([S.source_targets(s, args.label_smoothing, args.ferplus_weight, t_weight) for s in sources])
    labels = np.concatenate([s.train.labels for s in sources])
    sizes, weights = [len(s.train) for s in sources], [s.weight for s in sources]
    draw_weight = np.concatenate([np.full(len(s.train), s.weight) for s in sources])
    cw = D.class_weights(labels, len(classes), args.class_weight, sample_weight=draw_weight)
    sample_w = cw[labels].astype(np.float32)

    state = json.loads(state_path.read_text()) if args.resume else {}
    if len(sources) == 1 and weights[0] == 1.0 and not args.robot_camera_aug:   # the single-source recipe as before
        steps_per_epoch = math.ceil(len(images) / args.batch_size)
        train_ds = D.train_dataset(images, targets, sample_w, args.batch_size, args.seed, augment=not args.no_augment)
    else:
        train_ds, steps_per_epoch = S.mixed_dataset(images, targets, sample_w, sizes, weights, args.batch_size,
                                                    args.seed, first_epoch=state.get('epoch', 0),
                                                    augment=not args.no_augment, robot_camera=args.robot_camera_aug)
    if args.resume:
        model = keras.models.load_model(ckdir / 'last.keras')
        print(f'resuming {run} at epoch {state["epoch"]} (step {state["step"]}, {state["elapsed_s"]:.0f} s in)')
    else:
        model = build_model(args.arch, len(classes), width=args.width)
        if getattr(args, 'init_from', None) and str(args.init_from).endswith('.keras'):
            source = keras.models.load_model(args.init_from)
            if [w.shape for w in source.get_weights()] != [w.shape for w in model.get_weights()]:
                raise SystemExit(f'--init-from {args.init_from}: not this --arch/--width')
            model.set_weights(source.get_weights())
            print(f'weights from {args.init_from}', flush=True)
        elif getattr(args, 'init_from', None):
            from .warm_start import init_from_tflite
            init_from_tflite(model, args.init_from, _limit(primary.train, 2048, args.seed).images)
            print(f'weights from {args.init_from}', flush=True)
        model.compile(optimizer=keras.optimizers.AdamW(learning_rate=args.lr, weight_decay=args.weight_decay),
                      loss=keras.losses.CategoricalCrossentropy(),
                      metrics=[keras.metrics.CategoricalAccuracy(name='accuracy')])
    model.summary(print_fn=lambda s, **k: None)
    BudgetSchedule, Checkpointer, Progress = _callbacks(keras)
    budget = args.time_budget_min * 60 if args.time_budget_min else None
    schedule = BudgetSchedule(args.lr, steps_per_epoch * args.epochs, budget, state)
    ckpt = Checkpointer(run, schedule, state, val_sets, select, primary.name, keep_epochs=args.keep_epochs)
    t0 = time.monotonic()
    if state.get('epoch', 0) < args.epochs and schedule.progress() < 1.0:
        model.fit(train_ds, epochs=args.epochs, initial_epoch=state.get('epoch', 0), steps_per_epoch=steps_per_epoch,
                  verbose=0, shuffle=False,
                  callbacks=[schedule, ckpt, Progress(steps_per_epoch, args.epochs)])
    wall = time.monotonic() - t0

    keras.mixed_precision.set_global_policy('float32')   # score best.keras as exported: float32
    best = keras.models.load_model(run / 'best.keras')
    results = {'arch': args.arch, 'width': args.width, 'params': int(best.count_params()), 'classes': classes,
               'seed': args.seed, 'command': command, 'split': split_info,
               'best_epoch': ckpt.best_epoch, 'epochs_run': len(ckpt.history.get('loss', [])),
               'train_wall_s_this_session': round(wall, 1), 'train_wall_s_total': round(schedule.elapsed(), 1),
               'seconds_per_epoch': round(schedule.elapsed() / max(len(ckpt.history.get('loss', [])), 1), 1)}
    results['select_on'] = select
    results['selection_rule'] = ('best.keras = the epoch with the highest mean accuracy over the validation sets '
                                 f'{select} (each set counts equally, whatever its size)')
    results['sources'] = {}
    for src in sources:
        entry = {'path': src.path, 'weight': src.weight, 'split': src.info, 'train_n': int(len(src.train))}
        if src.val is not None:
            pred = best.predict(src.val.images[..., None].astype(np.float32), batch_size=256, verbose=0).argmax(1)
            entry['val'] = summarize(src.val.labels, pred, classes)
        results['sources'][src.name] = entry
    if primary.val is not None:
        results['val'] = results['sources'][primary.name]['val']
    if hold is not None and len(hold):
        pred = best.predict(hold.images[..., None].astype(np.float32), batch_size=256, verbose=0).argmax(1)
        results['holdout'] = summarize(hold.labels, pred, classes)
    _atomic_json(results, run / 'metrics.json')
    plot_curves(ckpt.history, run / 'curves.png')
    if 'val' in results:
        plot_confusion(results['val']['confusion'], classes, run / 'confusion_val.png',
                       title=f"val: accuracy {results['val']['accuracy']:.3f}, macro-F1 {results['val']['macro_f1']:.3f}")
    for name, entry in results['sources'].items():
        if 'val' in entry and len(sources) > 1:
            v = entry['val']
            plot_confusion(v['confusion'], classes, run / f'confusion_val_{name}.png',
                           title=f"{name} val: accuracy {v['accuracy']:.3f}, macro-F1 {v['macro_f1']:.3f}")
    print(json.dumps({k: results[k] for k in ('best_epoch', 'epochs_run', 'train_wall_s_total')}
                     | {f'{p}_{m}': results[p][m] for p in ('val', 'holdout') if p in results
                        for m in ('accuracy', 'macro_f1')}
                     | {f'{n}_val_{m}': e['val'][m] for n, e in results['sources'].items() if 'val' in e
                        for m in ('accuracy', 'macro_f1')}), flush=True)
    return results


INIT_FP32_WHY = ('a converted network under mixed_bfloat16 lost its accuracy in training mode (measured: 17 % '
                 'on 512 val faces against 68 % in float32; its BatchNormalization batch moments in bfloat16)')


def cpu_has_bf16() -> bool:
    """AVX512-BF16 or AMX-BF16 in /proc/cpuinfo (Linux): bfloat16 matmuls run natively there."""
    try:
        with open('/proc/cpuinfo') as f:
            flags = next((line.split(':', 1)[1].split() for line in f if line.startswith('flags')), [])
    except OSError:
        return False
    return 'avx512_bf16' in flags or 'amx_bf16' in flags


def resolve_precision(value: str) -> str:
    """'auto' = mixed_bfloat16 where the CPU has bf16 instructions (measured 1.7x faster per step on a
    Sapphire Rapids Xeon, 2 threads, student w20), else float32."""
    if value == 'auto':
        return 'mixed_bfloat16' if cpu_has_bf16() else 'float32'
    return value


def add_arguments(p):
    p.add_argument('--data', required=True, action='append', metavar='[NAME=]PATH[:WEIGHT]',
                   help='npz in the shared format; repeat for several sources. The first (primary) sets the classes '
                        'and needs a split array (train/val); WEIGHT = draws of each of its training images per '
                        'epoch (default 1). A source without a split array is split by subject (--val-subjects)')
    p.add_argument('--val-subjects', default='0.5', metavar='F[,NAME=F...]',
                   help='fraction of the people of a source without a split array (but with a subject array) kept '
                        'out of training as its validation set (by person, never by image); NAME=F per source')
    p.add_argument('--subject-seed', type=int, default=1, help='seed of the by-person validation split')
    p.add_argument('--select-on', default='',
                   help='comma-separated source names whose mean val accuracy selects best.keras (default: all '
                        'sources with a validation set)')
    p.add_argument('--robot-camera-aug', action='store_true',
                   help='add lighting gradients, blur, sensor noise and JPEG to the augmentation (data.robot_camera_batch)')
    p.add_argument('--run-dir', required=True, help='output folder (checkpoints, metrics, plots)')
    p.add_argument('--arch', default='emonet', choices=['emonet', 'student', 'tutorial'])
    p.add_argument('--width', type=int, default=32, help='emonet/student base width (channels of the first stage)')
    p.add_argument('--precision', default='float32', choices=['float32', 'mixed_bfloat16', 'mixed_float16', 'auto'],
                   help='Keras dtype policy for training (auto = mixed_bfloat16 on CPUs with bf16 instructions); '
                        'best.keras is always saved as float32')
    p.add_argument('--epochs', type=int, default=60)
    p.add_argument('--time-budget-min', type=float, default=0,
                   help='wall-clock budget: the LR schedule ends and training stops when it is spent')
    p.add_argument('--batch-size', type=int, default=128)
    p.add_argument('--lr', type=float, default=2e-3, help='peak learning rate (AdamW)')
    p.add_argument('--weight-decay', type=float, default=0.05)
    p.add_argument('--label-smoothing', type=float, default=0.1)
    p.add_argument('--ferplus-weight', type=float, default=0.0,
                   help='mix FER+ vote distributions into the targets (0 = original labels only, 1 = FER+ only)')
    p.add_argument('--class-weight', default='sqrt', choices=['none', 'sqrt', 'balanced'])
    p.add_argument('--no-augment', action='store_true')
    p.add_argument('--holdout', type=float, default=0.05, help='fraction of train held out (stratified) as a second check')
    p.add_argument('--limit-train', type=int, default=0, help='train on a random subset of this size (smoke tests)')
    p.add_argument('--limit-val', type=int, default=0, help='select on a random subset of val of this size')
    p.add_argument('--seed', type=int, default=1)
    p.add_argument('--split-seed', type=int, default=None,
                   help='seed of the holdout split (default: --seed); keep it fixed across ensemble members so the '
                        'holdout stays unseen by all of them')
    p.add_argument('--threads', type=int, default=0, help='TensorFlow threads (0 = all cores)')
    p.add_argument('--resume', action='store_true', help='continue from run-dir/checkpoints')
    p.add_argument('--keep-epochs', action='store_true',
                   help='also save every epoch as float32 run-dir/epochs/epoch_NNN.keras (for `emotion-train soup` '
                        'over a trajectory, i.e. stochastic weight averaging)')
    p.add_argument('--init-from', default=None, metavar='MODEL.tflite|MODEL.keras',
                   help='start from the weights of an export (float32 or int8) or a .keras of the same --arch/--width '
                        '(a fresh optimizer '
                        'and schedule; e.g. to train a shipped model further once its run folder is gone)')
