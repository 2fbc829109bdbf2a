"""PNG reports for a run: training curves and confusion matrix (matplotlib, headless)."""
import os

import numpy as np


def _plt():
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path):
    tmp = f'{path}.tmp.png'
    fig.savefig(tmp, dpi=100, bbox_inches='tight')
    os.replace(tmp, path)


def plot_curves(history: dict, path) -> None:
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    epochs = np.arange(1, len(history.get('loss', [])) + 1)
    for key, ax in (('loss', ax1), ('accuracy', ax2)):
        if key in history:
            ax.plot(epochs, history[key], label=f'train {key}')
        if f'val_{key}' in history:
            ax.plot(epochs, history[f'val_{key}'], label=f'val {key}')
        if key == 'accuracy':   # every validation source of a multi-source run, and the selection score
            for name in sorted(k for k in history if k.startswith('val_') and k.endswith('_accuracy')
                               and k != 'val_accuracy'):
                ax.plot(epochs, history[name], label=name[4:-9] + ' val', alpha=0.8)
            if 'select_score' in history:
                ax.plot(epochs, history['select_score'], 'k--', label='selection score')
        ax.set_xlabel('epoch')
        ax.set_title(key)
        ax.grid(alpha=0.3)
        ax.legend()
    _save(fig, path)
    plt.close(fig)


def plot_confusion(confusion, classes, path, title='confusion (rows: true, normalised)') -> None:
    plt = _plt()
    cm = np.asarray(confusion, np.float64)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    im = ax.imshow(norm, cmap='Blues', vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha='right')
    ax.set_yticks(range(len(classes)), classes)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, f'{norm[i, j]:.2f}\n{int(cm[i, j])}', ha='center', va='center', fontsize=7,
                    color='white' if norm[i, j] > 0.5 else 'black')
    ax.set_xlabel('predicted')
    ax.set_ylabel('true')
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046)
    _save(fig, path)
    plt.close(fig)
