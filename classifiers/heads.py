"""Classifier heads trained on cached bottleneck features.

`classifiers.trainer` trains softmax and mlp heads in NumPy and `classifiers.training`
fits logreg; both save `head.npz` (`classifiers.head_format`). The Keras and
scikit-learn builders below are what earlier versions trained and saved (`head.keras`,
`head.joblib`); they remain for reading those folders' heads and for the benchmark of
the Keras way (`benchmarks/heads.py`).
"""

from bottleneck_cache.pipeline import checks

HEADS = ("softmax", "mlp", "logreg")
KERAS_HEADS = ("softmax", "mlp")


def check_head(head):
    """Raises `ValueError` unless `head` is one of `HEADS`."""
    checks.check_choice(head, "head", HEADS)


def build_keras_head(head, feature_shape, num_classes, hidden_units=256, dropout=0.5, l2=0.0):
    """Builds an uncompiled Keras head.

    `softmax` is the Udacity lab's head, `Flatten -> Dense(num_classes)`;
    `mlp` adds `Dense(hidden_units, relu) -> Dropout(dropout)` before it.

    Args:
        head: `"softmax"` or `"mlp"`.
        feature_shape: shape of one sample's features, e.g. `(512,)` or `(7, 7, 512)`.
        num_classes: outputs of the last layer.
        hidden_units: width of the `mlp` hidden layer.
        dropout: dropout rate after the `mlp` hidden layer.
        l2: L2 penalty on every kernel (0 for none).

    Returns:
        A `keras.Model` from `(batch, *feature_shape)` features to
        `(batch, num_classes)` probabilities.
    """
    import keras  # pylint: disable=g-import-not-at-top

    if head not in KERAS_HEADS:
        raise ValueError(f"Expected a Keras head, one of {KERAS_HEADS}. Received: head={head!r}.")
    regularizer = keras.regularizers.L2(l2) if l2 else None
    inputs = keras.Input(shape=tuple(feature_shape), name="features")
    x = keras.layers.Flatten(name="flatten")(inputs)
    if head == "mlp":
        x = keras.layers.Dense(
            hidden_units, activation="relu", kernel_regularizer=regularizer, name="hidden"
        )(x)
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    outputs = keras.layers.Dense(
        num_classes, activation="softmax", kernel_regularizer=regularizer, name="predictions"
    )(x)
    return keras.Model(inputs, outputs, name=f"{head}_head")


def build_logreg(l2=0.0, max_iter=1000, seed=0):
    """Builds the scikit-learn head: standardization then multinomial logistic regression.

    Args:
        l2: L2 penalty; `C = 1 / l2`, or scikit-learn's default `C = 1` when 0.
        max_iter: L-BFGS iterations at most.
        seed: random state.

    Returns:
        An unfitted `sklearn.pipeline.Pipeline` over `(num_samples, feature_dim)` inputs.
    """
    from sklearn import linear_model  # pylint: disable=g-import-not-at-top
    from sklearn import pipeline  # pylint: disable=g-import-not-at-top
    from sklearn import preprocessing  # pylint: disable=g-import-not-at-top

    return pipeline.make_pipeline(
        preprocessing.StandardScaler(),
        linear_model.LogisticRegression(C=1.0 / l2 if l2 else 1.0, max_iter=max_iter, random_state=seed),
    )
