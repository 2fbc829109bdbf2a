"""`emotion-train`: import datasets, fit, evaluate and export emotion models."""
import argparse
import sys


def _fit(args):
    from .fit import run_fit
    run_fit(args)
    return 0


def _distill(args):
    from .distill import run_distill
    return run_distill(args)


def _teacher(args):
    from .teacher import run_teacher
    return run_teacher(args)


def _soup(args):
    from .soup import run_soup
    return run_soup(args)


def _import(args):
    from .importer import run_import
    return run_import(args)


def _evaluate(args):
    from .evaluate import run_evaluate
    return run_evaluate(args)


def _calibrate(args):
    from .calibrate import run_calibrate
    return run_calibrate(args)


def _export(args):
    from .export import run_export
    return run_export(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='emotion-train', description=__doc__)
    sub = parser.add_subparsers(dest='command', required=True)
    from . import fit
    p = sub.add_parser('fit', help='train a model (run folder with checkpoints, curves, confusion, metrics)')
    fit.add_arguments(p)
    p.set_defaults(func=_fit)
    for name, module, func, help_ in (('import', 'importer', _import, 'FaceLabeler folder / class tree / npz -> one npz'),
                                      ('evaluate', 'evaluate', _evaluate, 'score a model on an npz (JSON)'),
                                      ('export', 'export', _export, '.keras -> .tflite (float, int8) + labels'),
                                      ('distill', 'distill', _distill,
                                       'train a small student on the ensemble\'s probabilities (resumable)'),
                                      ('teacher', 'teacher', _teacher, 'cache a model\'s probabilities for distill'),
                                      ('soup', 'soup', _soup, 'average the weights of runs fine-tuned from one start'),
                                      ('calibrate', 'calibrate', _calibrate,
                                       'fit a calibration file to your own labelled faces (docs/calibration.md)')):
        p = sub.add_parser(name, help=help_)
        __import__(f'{__package__}.{module}', fromlist=['add_arguments']).add_arguments(p)
        p.set_defaults(func=func)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args) or 0


if __name__ == '__main__':
    sys.exit(main())
