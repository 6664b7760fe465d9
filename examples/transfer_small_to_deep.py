"""Small CNN -> deeper CNN: start a deeper network from a small one's trained layers.

On scikit-learn's 8x8 digits (bundled, no download), trains a small CNN
(conv1, pool1, conv2, logits), builds a deeper CNN whose first layers have the
same names and shapes (conv1, pool1, conv2, then conv3, pool2, conv4, dense,
logits), copies the small CNN's weights into it with
classifiers.transfer.transfer_weights, and trains it. The same deeper CNN (same
initial weights apart from the copied layers) is also trained from scratch, and
the validation accuracy of both after each epoch is printed, with the time each
path took.

Example:

  python examples/transfer_small_to_deep.py --epochs=3 --small_epochs=5

The command-line equivalent of the transfer step, on saved models:

  transfer_weights --source=small_cnn.keras --target=deep_cnn.keras --output=deep_init.keras
"""

import os
import time

from absl import app
from absl import flags

_EPOCHS = flags.DEFINE_integer("epochs", 3, "Epochs of the deeper CNN (both runs).", lower_bound=1)
_SMALL_EPOCHS = flags.DEFINE_integer("small_epochs", 5, "Epochs of the small CNN.", lower_bound=1)
_SEED = flags.DEFINE_integer("seed", 0, "Random seed: split, initialization, shuffling.", lower_bound=0)


def load_digits_split(seed):
    """Digits as `(x_train, y_train, x_val, y_val)`; x `(n, 8, 8, 1)` in [0, 1], y `(n,)` ints."""
    from sklearn import datasets  # pylint: disable=g-import-not-at-top
    from sklearn import model_selection  # pylint: disable=g-import-not-at-top

    digits = datasets.load_digits()
    images = (digits.images / 16.0).astype("float32")[..., None]
    x_train, x_val, y_train, y_val = model_selection.train_test_split(
        images, digits.target, test_size=0.2, stratify=digits.target, random_state=seed)
    return x_train, y_train, x_val, y_val


def small_cnn(keras):
    """conv1 -> pool1 -> conv2 -> logits: `(batch, 8, 8, 1)` -> `(batch, 10)` logits."""
    return keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1"),
        keras.layers.MaxPooling2D(name="pool1"),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2"),
        keras.layers.Flatten(name="flatten"),
        keras.layers.Dense(10, name="logits"),
    ], name="small_cnn")


def deep_cnn(keras):
    """small_cnn's conv1, pool1, conv2, then conv3, pool2, conv4, dense: `(batch, 8, 8, 1)` -> `(batch, 10)`."""
    return keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1"),
        keras.layers.MaxPooling2D(name="pool1"),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2"),
        keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="conv3"),
        keras.layers.MaxPooling2D(name="pool2"),
        keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="conv4"),
        keras.layers.Flatten(name="flatten"),
        keras.layers.Dense(64, activation="relu", name="dense"),
        keras.layers.Dense(10, name="logits"),
    ], name="deep_cnn")


def train(keras, model, data, epochs, seed):
    """Trains `model` in place; returns `(validation accuracy per epoch, seconds)`."""
    x_train, y_train, x_val, y_val = data
    keras.utils.set_random_seed(seed)  # The same batches for every model.
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    start = time.perf_counter()
    history = model.fit(x_train, y_train, batch_size=32, epochs=epochs,
                        validation_data=(x_val, y_val), verbose=0)
    return history.history["val_accuracy"], time.perf_counter() - start


def fresh_deep_cnn(keras, seed):
    """The deeper CNN with the same initial weights each time it is built."""
    keras.utils.set_random_seed(seed + 1)
    return deep_cnn(keras)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Too many command-line arguments: {' '.join(argv[1:])}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # Before TensorFlow loads.
    import keras  # pylint: disable=g-import-not-at-top

    from bottleneck_cache.classifiers import transfer  # pylint: disable=g-import-not-at-top

    seed, epochs = _SEED.value, _EPOCHS.value
    data = load_digits_split(seed)
    print(f"digits: {len(data[0])} train, {len(data[2])} validation images of 8x8")

    keras.utils.set_random_seed(seed)
    small = small_cnn(keras)
    small_accuracy, small_seconds = train(keras, small, data, _SMALL_EPOCHS.value, seed)
    print(f"small CNN: {_SMALL_EPOCHS.value} epochs, val_accuracy={small_accuracy[-1]:.4f}, "
          f"{small_seconds:.1f} s")

    scratch_accuracy, scratch_seconds = train(keras, fresh_deep_cnn(keras, seed), data, epochs, seed)

    start = time.perf_counter()
    deep = fresh_deep_cnn(keras, seed)
    report = transfer.transfer_weights(small, deep, match="name")
    transfer_seconds = time.perf_counter() - start
    print("\n" + transfer.format_report(report) + "\n")
    transferred_accuracy, transferred_seconds = train(keras, deep, data, epochs, seed)

    print("epoch  deep CNN from scratch  deep CNN with transferred conv1, conv2")
    for epoch, (a, b) in enumerate(zip(scratch_accuracy, transferred_accuracy, strict=True), start=1):
        print(f"{epoch:>5}  {a:>21.4f}  {b:>38.4f}")
    print(f"(a) from scratch: val_accuracy={scratch_accuracy[-1]:.4f} after {epochs} epochs, "
          f"{scratch_seconds:.1f} s")
    print(f"(b) transferred:  val_accuracy={transferred_accuracy[-1]:.4f} after {epochs} epochs, "
          f"{transferred_seconds:.1f} s (+ {small_seconds:.1f} s small CNN, "
          f"{transfer_seconds:.2f} s build + transfer)")


if __name__ == "__main__":
    app.run(main)
