"""The Udacity lab's bottleneck pickles, read as caches.

The transfer-learning lab this tool descends from shipped precomputed features
as pickles named `{network}_{dataset}[_{N}]_bottleneck_features_{split}.p`
(e.g. `vgg_cifar10_100_bottleneck_features_train.p`): each a dict
`{'features': float32 (num_samples, 1, 1, D), 'labels': (num_samples,) or
(num_samples, 1)}`, for the networks `vgg`, `resnet`, `inception` and the
datasets `cifar10` and `traffic` (GTSRB). `read_lab_pickle` turns one into a
`pipeline.cache.Cache`, so that stage two takes it wherever it takes a cache;
`import_lab_pickles` writes it as a regular HDF5 cache.

What the pickle does not say is recorded as such: the network, dataset,
per-class count and split come from the file name; weights, layer, pooling,
input size, preprocessing and engine are `UNKNOWN`. Features are flattened to
`(num_samples, D)` and labels made 1-D int64. Class names are the CIFAR-10 or
GTSRB names for `cifar10` and `traffic`, else `"0"`..`"C-1"`.

Pickles are read with `pipeline.datasets.load_data_pickle`, which refuses any
global but NumPy's array constructors before it is called: no code stored in
the file runs, so no `--allow_pickle` is needed.
"""

import hashlib
import json
import os

import numpy as np

from bottleneck_cache.features import networks
from bottleneck_cache.pipeline import cache
from bottleneck_cache.pipeline import datasets

SUFFIX = ".p"
UNKNOWN = "unknown (Udacity lab pickle)"
NAME_PATTERN = "{network}_{dataset}[_{N}]_bottleneck_features_{train,validation}.p"
_KEYS = ("features", "labels")

# GTSRB's 43 classes, as in the lab's signnames.csv.
GTSRB_CLASS_NAMES = (
    "Speed limit (20km/h)", "Speed limit (30km/h)", "Speed limit (50km/h)",
    "Speed limit (60km/h)", "Speed limit (70km/h)", "Speed limit (80km/h)",
    "End of speed limit (80km/h)", "Speed limit (100km/h)", "Speed limit (120km/h)", "No passing",
    "No passing for vehicles over 3.5 metric tons", "Right-of-way at the next intersection",
    "Priority road", "Yield", "Stop", "No vehicles", "Vehicles over 3.5 metric tons prohibited",
    "No entry", "General caution", "Dangerous curve to the left", "Dangerous curve to the right",
    "Double curve", "Bumpy road", "Slippery road", "Road narrows on the right", "Road work",
    "Traffic signals", "Pedestrians", "Children crossing", "Bicycles crossing",
    "Beware of ice/snow", "Wild animals crossing", "End of all speed and passing limits",
    "Turn right ahead", "Turn left ahead", "Ahead only", "Go straight or right",
    "Go straight or left", "Keep right", "Keep left", "Roundabout mandatory", "End of no passing",
    "End of no passing by vehicles over 3.5 metric tons",
)
LAB_CLASS_NAMES = {"cifar10": datasets.CIFAR10_CLASS_NAMES, "traffic": GTSRB_CLASS_NAMES}


def parse_name(path):
    """Reads network, dataset, per-class count and split from a lab pickle's file name.

    The network is the longest leading part of the name that the registry
    knows (`vgg` -> `vgg16`, `resnet` -> `resnet50`, `inception` ->
    `inception_v3`, or any registry name), else the first word.

    Args:
        path: e.g. `"data/vgg_cifar10_100_bottleneck_features_train.p"`.

    Returns:
        `(network, dataset, per_class, split)`, e.g. `("vgg16", "cifar10", 100, "train")`.

    Raises:
        CacheError: the name does not follow the lab's pattern.
    """
    try:
        parsed = cache.parse_cache_filename(path)
    except cache.CacheError:
        parsed = None
    if parsed is None or parsed.suffix != SUFFIX or parsed.augment_copies:
        raise cache.CacheError(
            f"Expected a Udacity lab bottleneck pickle named {NAME_PATTERN} (e.g. "
            f"vgg_cifar10_100_bottleneck_features_train.p), the name saying what it holds. "
            f"Received: {path}. Rename the file to that pattern."
        ) from None
    words = parsed.stem.split("_")
    for cut in range(len(words) - 1, 0, -1):
        try:
            network = networks.get_network("_".join(words[:cut])).name
        except networks.NetworkError:
            continue
        break
    else:
        cut, network = 1, words[0].lower()
    return network, "_".join(words[cut:]).lower(), parsed.per_class, parsed.split


def _refuse(path, received, fix="Pass the lab's file as it was downloaded, or save your own "
                                 "features in that layout"):
    return cache.CacheError(
        f"Expected {path} to be a Udacity lab bottleneck pickle: a dict {{'features': float "
        f"array (num_samples, 1, 1, D), 'labels': integer array (num_samples,) or "
        f"(num_samples, 1)}}. Received: {received}. {fix}."
    )


def _load(path):
    """The pickle's dict, loaded with the data-only unpickler."""
    if not os.path.isfile(path):
        raise cache.CacheError(f"Lab pickle {path} does not exist. Expected a file named "
                               f"{NAME_PATTERN}.")
    try:
        data = datasets.load_data_pickle(path)
    except datasets.UnsafePickleError as error:
        raise _refuse(path, f"a pickle that would call code ({str(error).rstrip('.')}); it was "
                            "refused before anything in it ran") from None
    except Exception as error:  # Unpickling a damaged file can raise almost anything.
        raise _refuse(path, f"a file that is not a readable pickle ({type(error).__name__}: "
                            f"{str(error).rstrip('.')})") from None
    if not isinstance(data, dict):
        raise _refuse(path, f"a pickled {type(data).__name__}")
    keys = {key.decode("latin1") if isinstance(key, bytes) else key: value
            for key, value in data.items()}
    if sorted(map(str, keys)) != sorted(_KEYS):
        raise _refuse(path, f"a dict with keys {sorted(map(str, keys))}")
    return keys["features"], keys["labels"]


def _check_arrays(path, features, labels):
    """Returns `(features (N, D) float32, labels (N,) int64)`, checked."""
    for key, value, kinds in (("features", features, "fiu"), ("labels", labels, "iu")):
        if not isinstance(value, np.ndarray) or value.dtype.kind not in kinds:
            what = (f"{value.dtype} array" if isinstance(value, np.ndarray)
                    else type(value).__name__)
            raise _refuse(path, f"`{key}` is a {what}")
    if features.ndim < 2 or len(features) == 0:
        raise _refuse(path, f"`features` of shape {features.shape}")
    if labels.shape not in ((len(features),), (len(features), 1)):
        raise _refuse(path, f"`features` of shape {features.shape} with `labels` of shape "
                            f"{labels.shape}")
    features = features.reshape(len(features), -1).astype(np.float32)
    finite = np.isfinite(features).all(axis=1)
    if not finite.all():
        raise _refuse(path, f"a non-finite feature (NaN or inf) in row {int(np.argmin(finite))}")
    return features, labels.reshape(-1).astype(np.int64)


def _class_names(path, dataset, labels):
    names = LAB_CLASS_NAMES.get(dataset)
    if names is None:
        names = tuple(str(i) for i in range(int(labels.max()) + 1 if len(labels) else 0))
    if labels.min() < 0 or labels.max() >= len(names):
        bad = int(labels.min()) if labels.min() < 0 else int(labels.max())
        raise _refuse(path, f"label {bad}, outside [0, {len(names)}) for the {len(names)} "
                            f"classes of dataset {dataset!r}")
    return tuple(names)


def _digest(class_names, ids, labels, features):
    """SHA-256 over what the split holds, as `features.extraction.dataset_digest` covers a dataset."""
    digest = hashlib.sha256()
    payload = [list(class_names), list(ids), [int(v) for v in labels]]
    digest.update(json.dumps(payload, separators=(",", ":")).encode("utf-8"))
    digest.update(np.ascontiguousarray(features).tobytes())
    return digest.hexdigest()


def read_lab_pickle(path):
    """Reads a Udacity lab bottleneck pickle as a cache.

    Args:
        path: a file named `{network}_{dataset}[_{N}]_bottleneck_features_{split}.p`.

    Returns:
        A `pipeline.cache.Cache`: features float32 `(N, D)`, labels int64
        `(N,)`, sample ids `<file name>:<row>`, no skipped samples, no views,
        and metadata with `UNKNOWN` where the pickle does not say.

    Raises:
        CacheError: a name off the lab's pattern, a missing file, a pickle that
            would run code, or anything but the lab's dict of arrays (the
            message names the file and what it holds).
    """
    path = os.fspath(path)
    network, dataset, per_class, split = parse_name(path)
    features, labels = _check_arrays(path, *_load(path))
    class_names = _class_names(path, dataset, labels)
    ids = tuple(f"{os.path.basename(path)}:{row}" for row in range(len(labels)))
    metadata = cache.CacheMetadata(
        network=network, weights=UNKNOWN, weights_sha256="", layer="", pooling=UNKNOWN,
        input_size=(0, 0), preprocessing=UNKNOWN, dataset=dataset,
        dataset_digest=_digest(class_names, ids, labels, features), split=split,
        per_class=per_class, seed=0, library_versions="{}", engine=UNKNOWN, precision="float32",
    )
    return cache.Cache(
        path=path, metadata=metadata, features=features, labels=labels, filenames=ids,
        class_names=class_names, skipped=(), fingerprint=metadata.fingerprint(),
        views=np.zeros(len(labels), np.int16),
    )


def cache_path(path, output_dir=None):
    """The HDF5 cache `import_lab_pickles` writes for a pickle: same name, `.h5`, in `output_dir`."""
    folder = os.path.dirname(os.path.abspath(path)) if output_dir is None else output_dir
    return os.path.join(folder, os.path.basename(os.fspath(path))[: -len(SUFFIX)] + ".h5")


def _is_cache(path):
    try:
        cache.read_metadata(path)
    except cache.CacheError:
        return False
    return True


def import_lab_pickles(paths, output_dir=None, overwrite=False):
    """Converts lab pickles into regular HDF5 caches, with the provenance `read_lab_pickle` records.

    Every pickle is read and every output checked before anything is written.

    Args:
        paths: lab pickle files (e.g. a train/validation pair).
        output_dir: where to write; None for beside each pickle.
        overwrite: replace existing caches (never a file that is not a cache).

    Returns:
        A list of `(pickle path, cache path, Cache)`.

    Raises:
        ValueError: no paths; a pickle that `read_lab_pickle` refuses; an
            output that exists (without `overwrite`) or is not a cache.
    """
    from bottleneck_cache.pipeline import files  # pylint: disable=g-import-not-at-top

    paths = [os.fspath(path) for path in paths]
    if not paths:
        raise ValueError(f"Expected at least one lab pickle ({NAME_PATTERN}). Received: none.")
    caches = [read_lab_pickle(path) for path in paths]
    outputs = [cache_path(path, output_dir) for path in paths]
    if len(set(outputs)) != len(outputs):
        raise ValueError(f"Expected one pickle per output cache. Received: {', '.join(paths)}, "
                         "some of them twice.")
    for output in outputs:
        files.check_output_file(output, "the output cache", inputs=paths, overwrite=overwrite,
                                recognize=_is_cache)
    for lab, output in zip(caches, outputs):
        with cache.CacheWriter(output, lab.metadata, lab.class_names, lab.feature_shape) as writer:
            writer.append(lab.features, lab.labels, lab.filenames, lab.views)
            writer.commit()
    return list(zip(paths, outputs, caches))


def format_summary(results):
    """The lines `import_pickle` prints: one per converted file."""
    lines = []
    for source, output, lab in results:
        lines.append(f"{source} -> {output}: {len(lab.labels)} samples, features "
                     f"{lab.feature_shape}, {len(lab.class_names)} classes "
                     f"({lab.metadata.network}, {lab.metadata.dataset}, {lab.metadata.split}).")
    return "\n".join(lines)
