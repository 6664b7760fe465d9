"""Stage one: run a frozen network over a dataset once and cache its features."""

import concurrent.futures
import dataclasses
import hashlib
import importlib.metadata
import json
import os
import re

import numpy as np
from absl import logging

from features import networks
from pipeline import cache
from pipeline import datasets

_VERSIONED_PACKAGES = ("bottleneck-cache", "tensorflow", "keras", "h5py", "numpy")
BAD_IMAGE_POLICIES = ("skip", "fail")


@dataclasses.dataclass(frozen=True)
class ExtractionResult:
    """What `extract_features` did for one split.

    Attributes:
        split: `"train"` or `"validation"`.
        path: the cache file.
        num_samples: rows in the cache.
        num_skipped: images left out because they could not be decoded.
        reused: True if an identical cache was already there.
    """

    split: str
    path: str
    num_samples: int
    num_skipped: int
    reused: bool


def library_versions():
    """Returns a JSON object of the versions of the packages that shape features."""
    versions = {}
    for package in _VERSIONED_PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return json.dumps(versions, sort_keys=True)


def dataset_digest(split):
    """Returns a SHA-256 over what a split holds.

    Covers the class names, sample ids and labels, and the images themselves:
    each file's size and modification time, or the pixels of array formats. A
    changed, added or removed image changes the digest.
    """
    digest = hashlib.sha256()
    payload = [list(split.class_names), list(split.ids), [int(v) for v in split.labels]]
    digest.update(json.dumps(payload, separators=(",", ":")).encode("utf-8"))
    if split.paths is not None:
        for path in split.paths:
            stat = os.stat(path)
            digest.update(f"{stat.st_size}:{stat.st_mtime_ns};".encode("ascii"))
    else:
        digest.update(np.ascontiguousarray(split.images).tobytes())
    return digest.hexdigest()


def default_dataset_name(dataset_dir):
    """Returns the dataset name implied by its folder or file (`"digits"` for none)."""
    if not dataset_dir:
        return "digits"
    base = os.path.basename(os.path.normpath(dataset_dir))
    return os.path.splitext(base)[0] if os.path.isfile(dataset_dir) else base


def _check_name(kind, value):
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._\-]*", value or ""):
        raise ValueError(
            f"Expected --{kind} to be letters, digits, '.', '_' or '-' (it becomes part of the "
            f"cache file names). Received: {kind}={value!r}."
        )


def _check_existing(path, metadata, overwrite):
    """Returns the `cache.CacheInfo` of an intact cache at `path` made as `metadata` says.

    Returns None when there is none to reuse, and always with `overwrite`.

    Raises:
        cache.CacheError: `path` holds another or an invalid cache and
            `overwrite` is False.
    """
    if overwrite or not os.path.exists(path):
        return None
    try:
        info = cache.verify_cache(path)
    except cache.CacheError as error:
        raise cache.CacheError(f"{error} (Or pass --overwrite to replace it.)") from None
    if info.fingerprint == metadata.fingerprint():
        return info
    differences = "; ".join(f"{d} (existing != requested)" for d in info.metadata.differences(metadata))
    raise cache.CacheError(
        f"{path} already holds a cache made with other settings: {differences}. "
        "Pass --overwrite to replace it, or choose another --output_dir."
    )


def file_network_name(network, spec):
    """The network's part of a cache file name: a lab alias as given, else the canonical name."""
    return network.lower() if network.lower() in networks.ALIASES else spec.name


def _batches(num_samples, batch_size):
    return [(start, min(start + batch_size, num_samples)) for start in range(0, num_samples, batch_size)]


def _load_batch(split, indices, input_size, on_bad_image):
    """Decodes a batch; with `on_bad_image="skip"`, leaves out images that fail.

    Returns:
        `(images, kept, skipped)`: `(k, height, width, 3)` uint8 images, the
        `(k,)` indices they came from, and `(id, reason)` of each image left out.

    Raises:
        datasets.DatasetError: an image failed and `on_bad_image` is `"fail"`.
    """
    try:
        return split.load(indices, input_size), indices, []
    except datasets.DatasetError:
        if on_bad_image == "fail":
            raise
    images, kept, skipped = [], [], []
    for index in indices:
        try:
            images.append(split.load([index], input_size)[0])
            kept.append(index)
        except datasets.DatasetError as error:
            skipped.append((split.ids[index], str(error)))
    empty = np.empty((0, *input_size, 3), dtype=np.uint8)
    return (np.stack(images) if images else empty), np.asarray(kept, dtype=np.int64), skipped


def _extract_split(model, spec, split, input_size, batch_size, on_bad_image, writer):
    """Runs `model` over `split` in batches and appends every row to `writer`.

    Decoding the next batch overlaps with the network's work on this one.

    Returns:
        The `(id, reason)` of each image left out.
    """
    from tqdm import auto as tqdm  # pylint: disable=g-import-not-at-top

    preprocess_input = spec.preprocess_input

    def load(bounds):
        images, kept, skipped = _load_batch(split, np.arange(*bounds), input_size, on_bad_image)
        return preprocess_input(images.astype(np.float32)), kept, skipped

    bounds = _batches(len(split), batch_size)
    all_skipped = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool, tqdm.tqdm(
        total=len(split), unit="img", desc=f"{spec.name} {split.name}"
    ) as progress:
        pending = pool.submit(load, bounds[0]) if bounds else None
        for i, (start, stop) in enumerate(bounds):
            batch, kept, skipped = pending.result()
            if i + 1 < len(bounds):
                pending = pool.submit(load, bounds[i + 1])
            if len(kept):
                features = np.asarray(model.predict_on_batch(batch))
                writer.append(features, split.labels[kept], [split.ids[k] for k in kept])
            if skipped:
                writer.skip(*zip(*skipped))
                for name, reason in skipped:
                    logging.warning("Skipped %s: %s", name, reason)
                all_skipped.extend(skipped)
            progress.update(stop - start)
    if len(split) and len(all_skipped) == len(split):
        raise datasets.DatasetError(
            f"Every image of the {split.name} split failed to decode (first: {all_skipped[0][1]}). "
            "Expected at least one readable image; check --dataset_dir and --dataset_format."
        )
    return all_skipped


def extract_features(
    network,
    dataset_dir=None,
    dataset=None,
    output_dir=".",
    per_class=None,
    batch_size=64,
    weights="imagenet",
    pooling="avg",
    layer=None,
    input_size=None,
    overwrite=False,
    dataset_format=None,
    validation_split=0.2,
    seed=0,
    allow_pickle=False,
    on_bad_image="skip",
):
    """Extracts and caches the bottleneck features of a dataset's two splits.

    Writes `<network>_<dataset>[_<per_class>]_bottleneck_features_train.h5` and
    `<network>_<dataset>_bottleneck_features_validation.h5` to `output_dir`. A
    cache already there with the same fingerprint is reused; one with another
    fingerprint is replaced only when `overwrite` is True.

    Args:
        network: a registry name or alias, e.g. `"vgg"` or `"mobilenet_v2"`.
        dataset_dir: dataset folder or file; None for scikit-learn's digits.
        dataset: dataset name for the file names; defaults to the folder name.
        output_dir: where the caches go.
        per_class: keep this many training examples per class (None: all).
        batch_size: images per network call.
        weights: `"imagenet"`, `"none"`, or a path to a weights file.
        pooling: `"avg"`, `"max"` or `"none"`.
        layer: take this layer's output instead of the last block's.
        input_size: resize images to this side instead of the network's default.
        overwrite: replace caches made with other settings.
        dataset_format: one of `pipeline.datasets.FORMATS`, or None to detect.
        validation_split: fraction held out when the dataset has no validation split.
        seed: seed of the per-class selection and the validation split.
        allow_pickle: allow loading pickle files (they can run code).
        on_bad_image: `"skip"` leaves out an image that cannot be decoded (it is
            listed in the cache's `skipped_filenames` and logged); `"fail"` stops.

    Returns:
        A list of `ExtractionResult`, train first.

    Raises:
        ValueError: bad arguments, dataset or cache (`DatasetError`,
            `NetworkError` and `CacheError` are `ValueError`s).
    """
    _check_name("network", network)
    spec = networks.get_network(network)
    size = networks.resolve_input_size(spec, input_size)
    networks.check_pooling(pooling)
    if on_bad_image not in BAD_IMAGE_POLICIES:
        raise ValueError(f"Expected on_bad_image to be one of {BAD_IMAGE_POLICIES}. "
                         f"Received: on_bad_image={on_bad_image!r}.")
    if batch_size < 1:
        raise ValueError(f"Expected batch_size >= 1. Received: batch_size={batch_size}.")
    if per_class is not None and per_class < 1:
        raise ValueError(f"Expected per_class >= 1 (or unset for all). Received: per_class={per_class}.")
    dataset = dataset or default_dataset_name(dataset_dir)
    _check_name("dataset", dataset)
    weights_id, weights_sha = networks.weights_identity(weights)
    splits = datasets.prepare_splits(
        dataset_dir, dataset_format=dataset_format, per_class=per_class,
        validation_split=validation_split, seed=seed, allow_pickle=allow_pickle,
    )
    versions = library_versions()
    plans = []
    for name in cache.SPLITS:
        split = splits[name]
        metadata = cache.CacheMetadata(
            network=spec.name, weights=weights_id, weights_sha256=weights_sha, layer=layer or "",
            pooling=pooling, input_size=size, preprocessing=spec.preprocessing, dataset=dataset,
            dataset_digest=dataset_digest(split), split=name,
            # Only the training split is cut to per_class; the seed counts where it chose samples.
            per_class=(per_class or 0) if name == "train" else 0,
            seed=seed if split.seeded else 0, library_versions=versions,
        )
        path = os.path.join(
            output_dir, cache.cache_filename(file_network_name(network, spec), dataset, name, per_class))
        plans.append((split, metadata, path, _check_existing(path, metadata, overwrite)))

    model = None
    results = []
    for split, metadata, path, existing in plans:
        if existing:
            logging.info("Reusing %s: same fingerprint %s.", path, metadata.fingerprint()[:12])
            results.append(ExtractionResult(
                split.name, path, existing.num_samples, existing.num_skipped, reused=True))
            continue
        if model is None:
            model = networks.build_feature_model(spec, weights, pooling, layer, size)
        feature_shape = tuple(model.output_shape[1:])
        with cache.CacheWriter(path, metadata, split.class_names, feature_shape) as writer:
            skipped = _extract_split(model, spec, split, size, batch_size, on_bad_image, writer)
            writer.commit()
        logging.info("Wrote %s: %d x %s features, %d images skipped.", path, writer.num_rows,
                     feature_shape, len(skipped))
        results.append(ExtractionResult(split.name, path, writer.num_rows, len(skipped), reused=False))
    return results
