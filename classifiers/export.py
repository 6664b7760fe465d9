"""Export a trained head with its frozen network as one Keras model for raw images.

The exported model takes images of any size with values 0-255 (float32; uint8
arrays are cast), shaped `(batch, height, width, 3)`, and does in-graph what
`extract_features` and `predict` do outside it:

1. `Resizing` to the head's input size, bilinear with antialiasing (as
   Pillow's bilinear resize that extraction uses, within one grey level);
2. `NetworkPreprocessing`: rounds to 8-bit values (extraction feeds 8-bit
   images) and applies the network's own `keras.applications.<module>.
   preprocess_input`;
3. the frozen network (same weights, layer and pooling as the caches);
4. the trained head, built from `head.npz` (`classifiers.head_format.to_keras`:
   its standardization folded exactly into the first `Dense` layer); an older
   `head.joblib` `logreg` becomes an equivalent `Dense` softmax;
5. `ClassNames`: an identity layer whose config carries the class names.

It returns `(batch, num_classes)` probabilities. The two custom layers are
registered with Keras when this module is imported, so

    from bottleneck_cache.classifiers import export  # registers NetworkPreprocessing and ClassNames
    model = keras.models.load_model("model.keras")
    names = export.class_names(model)

works without `custom_objects`.
"""

import importlib

import keras
import numpy as np

from bottleneck_cache.classifiers import predict
from bottleneck_cache.features import alexnet  # pylint: disable=unused-import  (registers AlexNet's LRN layer)
from bottleneck_cache.pipeline import files

_PACKAGE = "bottleneck_cache"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class NetworkPreprocessing(keras.layers.Layer):
    """A network's own `keras.applications.<module>.preprocess_input`, as a layer.

    Args:
        module_name: the `keras.applications` module, e.g. `"vgg16"`.
        quantize: round and clip to 0..255 first, as the 8-bit images that
            extraction feeds the network.
    """

    def __init__(self, module_name, quantize=True, **kwargs):
        super().__init__(**kwargs)
        self.module_name = module_name
        self.quantize = quantize
        self._preprocess_input = importlib.import_module(
            f"keras.applications.{module_name}").preprocess_input

    def call(self, inputs):
        x = keras.ops.cast(inputs, "float32")
        if self.quantize:
            x = keras.ops.clip(keras.ops.round(x), 0.0, 255.0)
        return self._preprocess_input(x)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "module_name": self.module_name, "quantize": self.quantize}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ClassNames(keras.layers.Layer):
    """Passes class probabilities through and carries their class names in its config."""

    def __init__(self, class_names, **kwargs):
        super().__init__(**kwargs)
        self.class_names = [str(name) for name in class_names]

    def call(self, inputs):
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "class_names": list(self.class_names)}


def class_names(model):
    """Returns the class names stored in an exported model, index = output column.

    Raises:
        ValueError: the model has no `ClassNames` layer (it was not exported here).
    """
    for layer in model.layers:
        if isinstance(layer, ClassNames):
            return list(layer.class_names)
    raise ValueError(
        f"Expected a model written by export_model, with a ClassNames layer. Received: {model.name!r} "
        f"with layers {', '.join(layer.name for layer in model.layers)}. Pass a model.keras that "
        "export_model wrote."
    )


def logreg_as_keras(pipeline, feature_shape, num_classes):
    """Converts a fitted `StandardScaler` + `LogisticRegression` pipeline into an exact Keras head.

    `softmax(((x - mean) / scale) @ coef.T + intercept)` is `softmax(x @ W' + b')` with
    `W' = coef.T / scale[:, None]` and `b' = intercept - coef @ (mean / scale)`. A binary
    regression (one row of `coef`) becomes the two logits `(0, z)`; a class absent from
    the training split gets a logit of -1e9, hence a probability of 0, as in training.

    Args:
        pipeline: the fitted pipeline of `classifiers.heads.build_logreg`.
        feature_shape: shape of one sample's features.
        num_classes: outputs (the head config's class names).

    Returns:
        A `keras.Model` from `(batch, *feature_shape)` features to `(batch, num_classes)`.
    """
    scaler, regression = pipeline[0], pipeline[-1]
    coef = np.asarray(regression.coef_, dtype=np.float64)
    intercept = np.asarray(regression.intercept_, dtype=np.float64)
    if coef.shape[0] == 1:  # Binary: p(class 1) = sigmoid(z) = softmax((0, z))[1].
        coef = np.concatenate([np.zeros_like(coef), coef])
        intercept = np.concatenate([np.zeros_like(intercept), intercept])
    dim = coef.shape[1]
    mean = np.zeros(dim) if scaler.mean_ is None else np.asarray(scaler.mean_, dtype=np.float64)
    scale = np.ones(dim) if scaler.scale_ is None else np.asarray(scaler.scale_, dtype=np.float64)
    kernel = np.zeros((dim, num_classes))
    bias = np.full((num_classes,), -1e9)
    classes = np.asarray(regression.classes_, dtype=np.int64)
    kernel[:, classes] = (coef / scale).T
    bias[classes] = intercept - coef @ (mean / scale)
    inputs = keras.Input(shape=tuple(feature_shape), name="features")
    x = keras.layers.Flatten(name="flatten")(inputs)
    dense = keras.layers.Dense(num_classes, activation="softmax", name="predictions")
    outputs = dense(x)
    dense.set_weights([kernel.astype(np.float32), bias.astype(np.float32)])
    return keras.Model(inputs, outputs, name="logreg_head")


def build_export_model(head_dir, weights=None):
    """Builds the single model `export_model` saves (see the module docstring).

    Args:
        head_dir: a folder written by `classifiers.training.train_head`.
        weights: for a head extracted with a weights file, that file.

    Returns:
        `(model, config)`: the `keras.Model` and the head config.

    Raises:
        ValueError: a bad head folder, bad weights, or a head whose input does
            not fit the network's output.
    """
    config = predict.read_head_config(head_dir)
    predict.resolve_weights(config, weights)
    head = predict.load_head(head_dir, config)
    spec, network = predict.build_network(config, weights)
    feature_shape = tuple(network.output_shape[1:])
    num_classes = len(config["class_names"])
    if not isinstance(head, keras.Model):
        head = logreg_as_keras(head, feature_shape, num_classes)
    head_shape = tuple(head.input_shape[1:])
    if head_shape != feature_shape or head.output_shape[-1] != num_classes:
        raise ValueError(
            f"Expected the head in {head_dir} to map {spec.name} features of shape {feature_shape} to "
            f"{num_classes} classes. Received: a head from {head_shape} to {head.output_shape[-1]}. "
            "Train the head again on caches of this network."
        )
    height, width = config["input_size"]
    inputs = keras.Input(shape=(None, None, 3), dtype="float32", name="images")
    x = keras.layers.Resizing(height, width, interpolation="bilinear", antialias=True,
                              name="resize")(inputs)
    x = NetworkPreprocessing(spec.module_name, name="preprocess")(x)
    x = network(x)
    x = head(x)
    outputs = ClassNames(config["class_names"], name="class_names")(x)
    model = keras.Model(inputs, outputs, name=f"{spec.name}_{config['head']}_classifier")
    return model, config


def _write_saved_model(model, saved_model_dir, inputs, overwrite):
    """Writes `model` as a TensorFlow SavedModel to `saved_model_dir`, atomically."""
    from absl import logging  # pylint: disable=g-import-not-at-top

    verbosity = logging.get_verbosity()
    with files.atomic_directory(saved_model_dir, "--saved_model_dir", inputs, overwrite,
                                command="export_model") as staging:
        # TensorFlow logs a dozen INFO lines per export through absl.
        logging.set_verbosity(logging.WARNING)
        try:
            model.export(staging, format="tf_saved_model", verbose=False)
        finally:
            logging.set_verbosity(verbosity)


def export_model(head_dir, output, saved_model_dir=None, weights=None, overwrite=False):
    """Writes a trained head and its frozen network as one Keras model for raw images.

    See the module docstring for what the model does. `output` is replaced
    atomically (a failure leaves an older file as it was); so is
    `saved_model_dir`.

    Args:
        head_dir: a folder written by `classifiers.training.train_head`.
        output: the `.keras` file to write.
        saved_model_dir: if set, also write a TensorFlow SavedModel there
            (`model.export`, for TF Serving / TFLite converters), whose `serve`
            endpoint maps float32 images to probabilities.
        weights: for a head extracted with a weights file, that file (checked
            by SHA-256).
        overwrite: replace an existing `output` (a `.keras` file) and
            `saved_model_dir` (a SavedModel folder this command wrote).

    Returns:
        A dict: `output`, `saved_model_dir`, `class_names`, `input_size`, `network`, `head`.

    Raises:
        ValueError: a bad head folder or output path, or weights that are not
            the head's.
    """
    if not str(output).endswith(".keras"):
        raise ValueError(
            f"Expected --output to be a .keras file. Received: {output!r}. Pass e.g. "
            "--output=model.keras (and --saved_model_dir=DIR for a TensorFlow SavedModel)."
        )
    inputs = (head_dir, weights if weights not in (None, "imagenet", "none") else None)
    files.check_output_file(output, "--output", inputs, overwrite, files.is_keras_archive)
    if saved_model_dir:
        files.check_output_dir(saved_model_dir, "--saved_model_dir", (*inputs, output),
                               overwrite=overwrite)
    model, config = build_export_model(head_dir, weights)
    with files.atomic_file(output, "--output", inputs, overwrite, files.is_keras_archive) as temporary:
        model.save(temporary)
    if saved_model_dir:
        _write_saved_model(model, saved_model_dir, (*inputs, output), overwrite)
    return {"output": output, "saved_model_dir": saved_model_dir,
            "class_names": list(config["class_names"]), "input_size": list(config["input_size"]),
            "network": config["network"], "head": config["head"]}


def format_summary(result):
    """Returns the lines the `export_model` command prints."""
    lines = [
        f"Wrote {result['output']}: {result['network']} + {result['head']} head, images of any size "
        f"(0-255) resized to {result['input_size'][0]}x{result['input_size'][1]} -> probabilities of "
        f"{len(result['class_names'])} classes ({', '.join(result['class_names'][:10])}"
        f"{', ...' if len(result['class_names']) > 10 else ''}).",
    ]
    if result["saved_model_dir"]:
        lines.append(f"Wrote the TensorFlow SavedModel {result['saved_model_dir']} (endpoint 'serve').")
    lines.append("Load it with: import bottleneck_cache.classifiers.export; keras.models.load_model(PATH)")
    return "\n".join(lines)
