"""The saved head, `head.npz`: a small, versioned format that NumPy reads without pickle.

A head is a standardization followed by dense layers. `head.npz` (`numpy.savez`,
readable with `numpy.load(path, allow_pickle=False)`) holds:

| key | dtype, shape | meaning |
|---|---|---|
| `format` | str, () | `"bottleneck-cache-head"` |
| `format_version` | int64, () | `1`; a reader refuses versions it does not know |
| `head` | str, () | `"softmax"`, `"mlp"` or `"logreg"` |
| `class_names` | str, (C,) | output column `i` is class `class_names[i]` |
| `feature_shape` | int64, (k,) | shape of one sample's features (flattened C-order to D values) |
| `mean`, `scale` | float32, (D,) | the features' scaling, from the training features: `x' = (x - mean) / scale` (`trainer.standardization`, a standardization with a variance floor, since issue 11) |
| `num_layers` | int64, () | L dense layers |
| `kernel_<i>`, `bias_<i>` | float32, (fan_in, fan_out), (fan_out,) | layer `i` (0-based): `x @ kernel + bias` |
| `activation_<i>` | str, () | `"relu"` between layers, `"softmax"` for the last |
| `settings` | str, () | JSON: the training settings (head, epochs, learning rate, l2, ...) |

Probabilities: `x' = (x.reshape(n, -1) - mean) / scale`, then each layer in turn.
`to_keras` builds the same function as a Keras model, with the standardization folded
into the first layer (`W' = W / scale[:, None]`, `b' = b - (mean / scale) @ W`).
"""

import dataclasses
import json

import numpy as np

FORMAT = "bottleneck-cache-head"
VERSION = 1
FILENAME = "head.npz"
ACTIVATIONS = ("relu", "softmax")


@dataclasses.dataclass(frozen=True)
class SavedHead:
    """A trained head as `head.npz` holds it (see the module docstring for each field)."""

    head: str
    class_names: tuple
    feature_shape: tuple
    mean: np.ndarray
    scale: np.ndarray
    kernels: tuple
    biases: tuple
    activations: tuple
    settings: dict

    def probabilities(self, features):
        """`(n, C)` float32 probabilities of `(n, *feature_shape)` raw features (NumPy)."""
        x = (np.asarray(features, np.float32).reshape(len(features), -1) - self.mean) / self.scale
        for kernel, bias, activation in zip(self.kernels, self.biases, self.activations):
            x = x @ kernel + bias
            if activation == "relu":
                np.maximum(x, 0.0, out=x)
        x -= x.max(axis=1, keepdims=True)
        np.exp(x, out=x)
        return x / x.sum(axis=1, keepdims=True)


def save(path, head):
    """Writes `head` (a `SavedHead`) to `path` as `head.npz`."""
    arrays = {
        "format": np.array(FORMAT), "format_version": np.array(VERSION, np.int64),
        "head": np.array(head.head), "class_names": np.array([str(n) for n in head.class_names]),
        "feature_shape": np.array(head.feature_shape, np.int64),
        "mean": np.asarray(head.mean, np.float32), "scale": np.asarray(head.scale, np.float32),
        "num_layers": np.array(len(head.kernels), np.int64),
        "settings": np.array(json.dumps(head.settings, sort_keys=True)),
    }
    for i, (kernel, bias, activation) in enumerate(zip(head.kernels, head.biases, head.activations)):
        arrays.update({f"kernel_{i}": np.asarray(kernel, np.float32),
                       f"bias_{i}": np.asarray(bias, np.float32), f"activation_{i}": np.array(activation)})
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def load(path):
    """Reads a `head.npz`.

    Returns:
        A `SavedHead`.

    Raises:
        ValueError: not a head file of a version this code reads, or inconsistent shapes.
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError) as error:
        raise ValueError(f"Expected {path} to be a head.npz written by feature_extraction. Received: "
                         f"{type(error).__name__}: {error}. Train the head again.") from None
    found = (str(arrays["format"]) if "format" in arrays else None,
             int(arrays["format_version"]) if "format_version" in arrays else None)
    if found != (FORMAT, VERSION):
        raise ValueError(
            f"Expected {path} in format {FORMAT!r} version {VERSION}. Received: format={found[0]!r}, "
            f"version={found[1]}. Train the head again with this version of feature_extraction.")
    try:
        layers = range(int(arrays["num_layers"]))
        head = SavedHead(
            head=str(arrays["head"]), class_names=tuple(str(n) for n in arrays["class_names"]),
            feature_shape=tuple(int(d) for d in arrays["feature_shape"]),
            mean=arrays["mean"], scale=arrays["scale"],
            kernels=tuple(arrays[f"kernel_{i}"] for i in layers),
            biases=tuple(arrays[f"bias_{i}"] for i in layers),
            activations=tuple(str(arrays[f"activation_{i}"]) for i in layers),
            settings=json.loads(str(arrays["settings"])))
    except KeyError as error:
        raise ValueError(f"Expected {path} to hold the array {error}. Received: a head.npz without it. "
                         "Train the head again.") from None
    _check_shapes(path, head)
    return head


def _check_shapes(path, head):
    fan_in = int(np.prod(head.feature_shape))
    shapes = [head.mean.shape, head.scale.shape]
    ok = shapes == [(fan_in,), (fan_in,)] and set(head.activations) <= set(ACTIVATIONS)
    for kernel, bias in zip(head.kernels, head.biases):
        ok = ok and kernel.shape[0] == fan_in and bias.shape == kernel.shape[1:]
        fan_in = kernel.shape[1]
    if not ok or not head.kernels or fan_in != len(head.class_names):
        raise ValueError(
            f"Expected {path} to map {head.feature_shape} features to {len(head.class_names)} classes "
            f"through its layers. Received: kernels {[k.shape for k in head.kernels]}, mean "
            f"{head.mean.shape}, activations {head.activations}. Train the head again.")


def folded_first_layer(head):
    """The first layer with the standardization folded in, computed in float64.

    Returns:
        `(kernel, bias)` float32: `kernel / scale[:, None]` and `bias - (mean / scale) @ kernel`.
    """
    kernel = np.asarray(head.kernels[0], np.float64)
    scale = np.asarray(head.scale, np.float64)
    folded = kernel / scale[:, None]
    bias = np.asarray(head.biases[0], np.float64) - (np.asarray(head.mean, np.float64) / scale) @ kernel
    return folded.astype(np.float32), bias.astype(np.float32)


def to_keras(head):
    """Builds the Keras model of a saved head (imports Keras).

    `Flatten -> Dense(first layer, standardization folded in)`, then for an mlp
    `Dropout(dropout) -> Dense(softmax)` (dropout only acts when fine-tuning).
    Layer names follow the heads Keras used to train: `flatten`, `hidden`,
    `dropout`, `predictions`.

    Returns:
        A `keras.Model` named `<head>_head` from `(batch, *feature_shape)` to
        `(batch, num_classes)` probabilities.
    """
    import keras  # pylint: disable=g-import-not-at-top

    inputs = keras.Input(shape=tuple(head.feature_shape), name="features")
    x = keras.layers.Flatten(name="flatten")(inputs)
    weights = [folded_first_layer(head)] + list(zip(head.kernels[1:], head.biases[1:]))
    for index, ((kernel, bias), activation) in enumerate(zip(weights, head.activations)):
        last = index == len(weights) - 1
        name = "predictions" if last else ("hidden" if index == 0 else f"hidden_{index}")
        dense = keras.layers.Dense(kernel.shape[1], activation=activation, name=name)
        x = dense(x)
        dense.set_weights([np.asarray(kernel, np.float32), np.asarray(bias, np.float32)])
        if not last and head.head == "mlp":
            x = keras.layers.Dropout(float(head.settings.get("dropout", 0.0)),
                                     name="dropout" if index == 0 else f"dropout_{index}")(x)
    return keras.Model(inputs, x, name=f"{head.head}_head")
