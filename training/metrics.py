"""Classification metrics from predicted and true class indices (numpy only)."""
import numpy as np


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
    """Rows = true class, columns = predicted class."""
    cm = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(cm, (np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)), 1)
    return cm


def summarize(y_true, y_pred, classes) -> dict:
    """n, accuracy, macro_f1, per-class recall (None for a class absent from y_true), confusion.

    macro_f1 averages over the classes that occur in y_true: a class the data does not contain says
    nothing about the model (predictions of it still count against precision of none, and as errors).
    """
    cm = confusion_matrix(y_true, y_pred, len(classes))
    n = int(cm.sum())
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(1).astype(np.float64)
    predicted = cm.sum(0).astype(np.float64)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp),
                   where=(precision + recall) > 0)
    present = support > 0
    return {
        'n': n,
        'accuracy': float(tp.sum() / n) if n else 0.0,
        'macro_f1': float(f1[present].mean()) if present.any() else 0.0,
        'per_class': {c: (float(recall[i]) if support[i] > 0 else None) for i, c in enumerate(classes)},
        'per_class_f1': {c: float(f1[i]) for i, c in enumerate(classes) if present[i]},
        'support': {c: int(support[i]) for i, c in enumerate(classes)},
        'classes': list(classes),
        'confusion': cm.tolist(),
    }
