"""Classify new images with a trained head: the frozen network, then the head.

A head folder written by `classifiers.training.train_head` says, in
`head_config.json`, which network, weights, layer, pooling, input size and
preprocessing its features came from. `predict` rebuilds that network, decodes
and preprocesses each image exactly as `extract_features` did, and runs the
network and the head, so that an image's probabilities are those the head would
give its cached features.

Weights: `"imagenet"` heads use Keras' ImageNet weights; `"none"` heads rebuild
the extraction's seeded random weights (the head config's `seed`, which is the
extraction's `--seed` for random weights; 0 when absent); `"file:<name>"` heads
need the weights file itself (`weights=PATH`), checked against the recorded
SHA-256.
"""

import dataclasses
import json
import os

import numpy as np

from bottleneck_cache.features import networks
from bottleneck_cache.pipeline import checks
from bottleneck_cache.pipeline import datasets
from bottleneck_cache.pipeline import files

HEAD_CONFIG = "head_config.json"
# Keys `classifiers.training.train_head` writes to head_config.json that this module reads.
_CONFIG_KEYS = ("network", "weights", "weights_sha256", "layer", "pooling", "preprocessing",
                "input_size", "class_names", "head", "head_file")
# Class names in a dumped image's file name, as in the VGG16 -> MNIST tutorial.
DUMP_CLASSES = 5


@dataclasses.dataclass(frozen=True)
class ImagePrediction:
    """What `predict` found for one input image.

    Attributes:
        path: the image file.
        top_k: `((class_name, probability), ...)`, most probable first; empty
            when the image was skipped.
        probabilities: `(num_classes,)` float32 probabilities in the order of
            the head's class names, or None when the image was skipped.
        error: why the image was skipped (it could not be decoded), else None.
        dump_path: the PNG written for it in `dump_dir`, else None.
    """

    path: str
    top_k: tuple
    probabilities: np.ndarray | None = None
    error: str | None = None
    dump_path: str | None = None

    @property
    def skipped(self):
        """True if the image could not be decoded."""
        return self.error is not None


def read_head_config(head_dir):
    """Reads and checks `<head_dir>/head_config.json`.

    Returns:
        The config as a dict.

    Raises:
        ValueError: no such folder or file, unreadable JSON, missing keys, or
            a head file that is not there.
    """
    path = os.path.join(head_dir, HEAD_CONFIG)
    if not os.path.isfile(path):
        what = "no such folder" if not os.path.isdir(head_dir) else f"a folder without {HEAD_CONFIG}"
        raise ValueError(
            f"Expected a head folder written by feature_extraction (holding {HEAD_CONFIG} and the "
            f"head) at {head_dir!r}. Received: {what}. Pass --head_dir=<the --output_dir of "
            "feature_extraction>, e.g. runs/vgg16_cifar10_softmax."
        )
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(
            f"Expected {path} to be the JSON written by feature_extraction. Received: {error}. "
            "Train the head again to rewrite it."
        ) from None
    missing = [key for key in _CONFIG_KEYS if not isinstance(config, dict) or key not in config]
    if missing:
        raise ValueError(
            f"Expected {path} to hold {', '.join(_CONFIG_KEYS)}. Received: no {', '.join(missing)}. "
            "Train the head again with this version of feature_extraction."
        )
    head_path = os.path.join(head_dir, config["head_file"])
    if not os.path.isfile(head_path):
        raise ValueError(
            f"Expected the trained head {config['head_file']} beside {path}. Received: no such file. "
            "Restore it, or train the head again."
        )
    return config


def resolve_weights(config, weights=None):
    """Returns the `weights` argument that rebuilds the network a head was trained for.

    Args:
        config: a head config (`read_head_config`).
        weights: None, or what the user passed: a path to a weights file (for
            a head extracted with one), or `"imagenet"` / `"none"` (which must
            match the head's).

    Returns:
        `"imagenet"`, `"none"` or the path.

    Raises:
        ValueError: the head needs a weights file and none, another file or
            another kind of weights was given; or weights were given for a
            head that has its own (`imagenet`, `none`).
    """
    recorded = config["weights"]
    if not recorded.startswith("file:"):
        if weights in (None, recorded):
            return recorded
        hint = ("Put the ImageNet weights file in ~/.keras/models/ (or $KERAS_HOME/models/) for a "
                "machine without internet" if recorded == "imagenet" else
                "The random weights are rebuilt from the extraction's seed")
        raise ValueError(
            f"Expected no --weights for this head: its features were extracted with "
            f"weights={recorded!r}. Received: --weights={weights}. Drop --weights. ({hint}.)"
        )
    name, sha = recorded[len("file:"):], config["weights_sha256"]
    needed = f"the weights file {name} (sha256 {sha})"
    if weights is None or weights in ("imagenet", "none"):
        raise ValueError(
            f"Expected --weights=PATH to {needed}, the file this head's features were extracted with. "
            f"Received: {'no --weights' if weights is None else '--weights=' + weights}. Pass "
            "--weights=PATH to that file."
        )
    identity, received_sha = networks.weights_identity(weights)
    if received_sha != sha:
        raise ValueError(
            f"Expected --weights to be {needed}, the file this head's features were extracted with. "
            f"Received: {weights} ({identity[len('file:'):]}, sha256 {received_sha}), another file. "
            "Pass --weights=PATH to the file the features were extracted with."
        )
    return weights


def build_network(config, weights=None):
    """Builds the frozen network a head's features came from, as `extract_features` did.

    `config` and `weights` are those of `resolve_weights`.

    Returns:
        `(spec, model)`: the `networks.NetworkSpec` and the frozen `keras.Model`.

    Raises:
        ValueError: unknown network, a preprocessing that differs from the
            registry's, or bad weights.
    """
    spec = networks.get_network(config["network"])
    if config["preprocessing"] != spec.preprocessing:
        raise ValueError(
            f"Expected this head's preprocessing {config['preprocessing']!r} to be the one "
            f"{spec.name} uses now. Received: {spec.preprocessing!r}. Extract the features and train "
            "the head again with this version."
        )
    weights = resolve_weights(config, weights)
    # Random weights: the extraction's, from its seed.
    model = networks.build_feature_model(spec, weights, config["pooling"], config["layer"] or None,
                                         tuple(config["input_size"]), seed=config.get("seed", 0))
    return spec, model


def load_head(head_dir, config):
    """Loads the trained head as a `keras.Model`, or the scikit-learn pipeline of an older `logreg`.

    `head.npz` (`classifiers.head_format`) becomes a Keras model with the
    standardization folded into its first layer; `head.keras` and `head.joblib`,
    written by earlier versions, load as they were saved.
    """
    path = os.path.join(head_dir, config["head_file"])
    if config["head_file"].endswith(".npz"):
        from bottleneck_cache.classifiers import head_format  # pylint: disable=g-import-not-at-top

        return head_format.to_keras(head_format.load(path))
    try:
        if config["head_file"].endswith(".joblib"):
            import joblib  # pylint: disable=g-import-not-at-top

            return joblib.load(path)
        import keras  # pylint: disable=g-import-not-at-top

        return keras.models.load_model(path, compile=False)
    except Exception as error:  # Keras and joblib raise many kinds on a damaged file.
        raise ValueError(
            f"Expected {path} to be the head saved by feature_extraction. Received: "
            f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}. Train the "
            "head again."
        ) from None


def head_probabilities(head, features, num_classes):
    """Runs a head (`load_head`) on `(n, *feature_shape)` features; returns `(n, num_classes)`."""
    if hasattr(head, "predict_proba"):
        probabilities = np.zeros((len(features), num_classes), dtype=np.float32)
        # A class absent from the training split has no column (as in training).
        probabilities[:, head.classes_] = head.predict_proba(features.reshape(len(features), -1))
        return probabilities
    return np.asarray(head.predict_on_batch(features), dtype=np.float32)


def find_images(inputs):
    """Lists the image files named by `inputs`: files as given, folders searched recursively.

    Folders yield their image files (by extension, hidden entries skipped),
    sorted; a file given by name is taken whatever its extension.

    Raises:
        ValueError: no inputs, a path that does not exist, or no image found.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    inputs = [os.fspath(path) for path in inputs or ()]
    if not inputs:
        raise ValueError("Expected at least one image file or folder. Received: none. "
                         "Pass --inputs=PATH[,PATH...].")
    missing = [path for path in inputs if not os.path.exists(path)]
    if missing:
        raise ValueError(
            f"Expected image files or folders. Received: {', '.join(repr(p) for p in missing)}, which "
            f"{'does' if len(missing) == 1 else 'do'} not exist. Check the path{'s' * (len(missing) > 1)}."
        )
    found = []
    for path in inputs:
        found.extend(datasets.image_files(path) if os.path.isdir(path) else [path])
    if not found:
        raise ValueError(
            f"Expected image files ({', '.join(datasets.IMAGE_EXTENSIONS)}) in "
            f"{', '.join(repr(p) for p in inputs)}. Received: none found. Check the path and the "
            "file extensions."
        )
    return found


def dump_name(class_names):
    """`"[c1 c2 c3 c4 c5]"` from the top classes, with path separators made safe."""
    safe = [str(name).replace(os.sep, "_").replace("/", "_").replace("\0", "_") for name in class_names]
    name = "[" + " ".join(safe) + "]"
    # File names are at most 255 bytes; leave room for " (N).png".
    while len(name.encode("utf-8")) > 240:
        name = name[:-2] + "]"
    return name


def _dump_image(path, dump_dir, name):
    """Writes the image at `path` (as 8-bit RGB) to `dump_dir/<name>.png`, never over a file."""
    from PIL import Image  # pylint: disable=g-import-not-at-top

    target = os.path.join(dump_dir, f"{name}.png")
    number = 1
    while os.path.exists(target):
        number += 1
        target = os.path.join(dump_dir, f"{name} ({number}).png")
    with Image.open(path) as image:
        image.load()
        rgb = datasets.to_rgb(image)
        rgb.save(target, format="PNG")
    return target


def _check_options(top_k, dump_count, batch_size):
    for name, value, low in (("top_k", top_k, 1), ("dump_count", dump_count, 0),
                             ("batch_size", batch_size, 1)):
        checks.check_scalar(value, name, low)


def predict(head_dir, inputs, weights=None, top_k=5, dump_dir=None, dump_count=25, batch_size=32):
    """Classifies image files with a trained head.

    Each image is decoded, converted to RGB and resized (bilinear) to the head's
    input size exactly as `extract_features` does, passed through the
    network's own `preprocess_input` and the frozen network, then the head.
    An image that cannot be decoded is skipped: it is logged (`Skipped <path>:
    <reason>`) and returned with its `error`.

    Args:
        head_dir: a folder written by `classifiers.training.train_head`.
        inputs: image files and/or folders (searched recursively, sorted).
        weights: for a head extracted with a weights file, the path to that
            file (checked by SHA-256); else None.
        top_k: classes to report per image.
        dump_dir: if set, write up to `dump_count` of the images there as PNG,
            named after their top-5 classes, `[c1 c2 c3 c4 c5].png` (` (2)`
            etc. when a name is taken).
        dump_count: images to write to `dump_dir` at most.
        batch_size: images per network call.

    Returns:
        A list of `ImagePrediction`, one per image, in input order.

    Raises:
        ValueError: a bad head folder, input path or option, weights that are
            not the head's, or no image that could be decoded.
    """
    _check_options(top_k, dump_count, batch_size)
    if dump_dir:  # Only ever adds files there (never over one): it must be a writable folder.
        files.check_writable_dir(dump_dir, "--dump_dir")
    config = read_head_config(head_dir)
    resolve_weights(config, weights)  # Fails before any slow work.
    paths = find_images(inputs)
    head = load_head(head_dir, config)
    spec, model = build_network(config, weights)
    probabilities, errors = _classify(paths, config, head, spec, model, batch_size)
    if dump_dir:
        os.makedirs(dump_dir, exist_ok=True)
    return _results(paths, probabilities, errors, list(config["class_names"]), top_k, dump_dir,
                    dump_count)


def _classify(paths, config, head, spec, model, batch_size):
    """Decodes the images batch by batch and runs the network and the head on those that decode.

    Returns:
        `(probabilities, errors)`: `{path index: (num_classes,) float32}` and
        `{path index: why it was skipped}`.

    Raises:
        ValueError: no image could be decoded.
    """
    input_size, num_classes = tuple(config["input_size"]), len(config["class_names"])
    probabilities, errors = {}, {}

    def decode(index, size):
        return datasets.load_image_file(paths[index], size)

    for start in range(0, len(paths), batch_size):
        decoded = datasets.decode_images(
            decode, range(start, min(start + batch_size, len(paths))), paths, input_size)
        errors.update(zip(decoded.skipped_indices.tolist(), (reason for _, reason in decoded.skipped)))
        if len(decoded.kept):
            images = spec.preprocess_input(decoded.images.astype(np.float32))
            features = np.asarray(model.predict_on_batch(images))
            probabilities.update(zip(decoded.kept.tolist(),
                                     head_probabilities(head, features, num_classes)))
    if not probabilities:
        first = next(iter(errors))
        raise ValueError(
            f"Expected at least one readable image among {len(paths)} input files. Received: none "
            f"could be decoded (e.g. {errors[first]}). Check --inputs."
        )
    return probabilities, errors


def _results(paths, probabilities, errors, class_names, top_k, dump_dir, dump_count):
    """One `ImagePrediction` per path, in order; the first `dump_count` classified ones dumped."""
    results = []
    dumped = 0
    for index, path in enumerate(paths):
        if index in errors:
            results.append(ImagePrediction(path, (), None, errors[index]))
            continue
        row = probabilities[index]
        order = np.argsort(-row, kind="stable")
        top = tuple((class_names[i], float(row[i])) for i in order[:top_k])
        dump_path = None
        if dump_dir and dumped < dump_count:
            name = dump_name(class_names[i] for i in order[:DUMP_CLASSES])
            dump_path = _dump_image(path, dump_dir, name)
            dumped += 1
        results.append(ImagePrediction(path, top, row, None, dump_path))
    return results


def format_prediction(result):
    """Returns the lines the `predict` command prints for one `ImagePrediction`."""
    if result.skipped:
        return f"{result.path}: skipped ({result.error})"
    lines = [result.path]
    lines.extend(f"  {probability:.4f}  {name}" for name, probability in result.top_k)
    if result.dump_path:
        lines.append(f"  -> {result.dump_path}")
    return "\n".join(lines)
