"""Validation metrics of a trained head, computed the same way for every head."""

import numpy as np


def evaluate(probabilities, labels, prefix="val_"):
    """Computes accuracy, top-5 accuracy and cross-entropy.

    The same numbers as scikit-learn's `accuracy_score`, `log_loss` (probabilities
    clipped to `[eps, 1 - eps]`) and `top_k_accuracy_score` (ties broken as its stable
    sort does), computed in NumPy: importing `sklearn.metrics` alone takes about a
    second, longer than training a softmax head.

    Args:
        probabilities: `(num_samples, num_classes)` predicted class probabilities.
        labels: `(num_samples,)` true class indices.
        prefix: prepended to every key.

    Returns:
        A dict with `<prefix>accuracy`, `<prefix>loss` and, when there are 5 or
        more classes, `<prefix>top5_accuracy`.
    """
    num_classes = probabilities.shape[1]
    labels = np.asarray(labels, dtype=np.int64)
    # Renormalize in float64: float32 softmax rows may miss 1 by rounding.
    probabilities = np.asarray(probabilities, dtype=np.float64)
    probabilities = probabilities / probabilities.sum(axis=1, keepdims=True)
    eps = np.finfo(np.float64).eps
    true = np.clip(probabilities[np.arange(len(labels)), labels], eps, 1 - eps)
    results = {
        f"{prefix}accuracy": float(np.mean(probabilities.argmax(axis=1) == labels)),
        f"{prefix}loss": float(-np.mean(np.log(true))),
    }
    if num_classes >= 5:
        ranked = np.argsort(probabilities, axis=1, kind="mergesort")[:, ::-1][:, :5]
        results[f"{prefix}top5_accuracy"] = float(np.mean((ranked == labels[:, None]).any(axis=1)))
    return results
