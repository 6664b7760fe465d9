"""Validation metrics of a trained head, computed the same way for every head."""

import numpy as np


def evaluate(probabilities, labels, prefix="val_"):
    """Computes accuracy, top-5 accuracy and cross-entropy.

    Args:
        probabilities: `(num_samples, num_classes)` predicted class probabilities.
        labels: `(num_samples,)` true class indices.
        prefix: prepended to every key.

    Returns:
        A dict with `<prefix>accuracy`, `<prefix>loss` and, when there are 5 or
        more classes, `<prefix>top5_accuracy`.
    """
    from sklearn import metrics  # pylint: disable=g-import-not-at-top

    num_classes = probabilities.shape[1]
    classes = np.arange(num_classes)
    # Renormalize in float64: float32 softmax rows may miss 1 by rounding.
    probabilities = np.asarray(probabilities, dtype=np.float64)
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    results = {
        f"{prefix}accuracy": float(metrics.accuracy_score(labels, probabilities.argmax(axis=1))),
        f"{prefix}loss": float(metrics.log_loss(labels, probabilities, labels=classes)),
    }
    if num_classes >= 5:
        results[f"{prefix}top5_accuracy"] = float(
            metrics.top_k_accuracy_score(labels, probabilities, k=5, labels=classes)
        )
    return results
