"""The bottleneck cache: one HDF5 file per split, self-describing and validated.

This package is the only code that imports h5py. A cache file holds:

* `features`: float32 `(num_samples, *feature_shape)`, chunked by rows.
* `labels`: int64 `(num_samples,)`, each in `[0, num_classes)`.
* `filenames`: UTF-8 strings `(num_samples,)`, the id of each sample's source.
* `class_names`: UTF-8 strings `(num_classes,)`; `labels` index into it.

and, as root attributes, `format` (`"bottleneck-cache"`), `format_version`, the
settings that produced the features (`CacheMetadata`), `complete`,
`fingerprint`, a SHA-256 of the settings, and the features' measured fidelity
to float32 (`FIDELITY_ATTRS`: `fidelity` is `"exact"` for float32 features,
`"cosine"` with the per-image cosine statistics for a lower precision; see
`features.precision.Fidelity`). Files are written to a temporary file
in the target's folder that replaces the target only once every row is written.

Modules (callers use the names below, `from bottleneck_cache.pipeline import cache`):

* `schema`: `CacheMetadata`, the fingerprint, `PAIRED_ATTRIBUTES`/`pair_key`,
  `Cache`, `CacheInfo`, and every file name (`cache_filename` and its inverse
  `parse_cache_filename`, `run_name`, shards, parts, temporaries); no h5py.
* `writer`: `CacheWriter`.
* `reader`: `read_cache`, `read_metadata`, `verify_cache`, `read_fidelity`,
  `is_hdf5_file`, and the checks they run.
* `parts`: `read_part_header` and `merge_parts` (checkpoints and shards).
"""

from bottleneck_cache.pipeline.cache.parts import merge_parts
from bottleneck_cache.pipeline.cache.parts import read_part_header
from bottleneck_cache.pipeline.cache.reader import is_hdf5_file
from bottleneck_cache.pipeline.cache.reader import read_cache
from bottleneck_cache.pipeline.cache.reader import read_fidelity
from bottleneck_cache.pipeline.cache.reader import read_metadata
from bottleneck_cache.pipeline.cache.reader import verify_cache
from bottleneck_cache.pipeline.cache.schema import Cache
from bottleneck_cache.pipeline.cache.schema import CacheError
from bottleneck_cache.pipeline.cache.schema import CacheInfo
from bottleneck_cache.pipeline.cache.schema import CacheMetadata
from bottleneck_cache.pipeline.cache.schema import CacheName
from bottleneck_cache.pipeline.cache.schema import cache_filename
from bottleneck_cache.pipeline.cache.schema import FIDELITY_ATTRS
from bottleneck_cache.pipeline.cache.schema import FORMAT_NAME
from bottleneck_cache.pipeline.cache.schema import FORMAT_VERSION
from bottleneck_cache.pipeline.cache.schema import is_parts_folder
from bottleneck_cache.pipeline.cache.schema import NAME_PATTERN
from bottleneck_cache.pipeline.cache.schema import pair_key
from bottleneck_cache.pipeline.cache.schema import PAIRED_ATTRIBUTES
from bottleneck_cache.pipeline.cache.schema import parse_cache_filename
from bottleneck_cache.pipeline.cache.schema import part_filename
from bottleneck_cache.pipeline.cache.schema import parts_folder
from bottleneck_cache.pipeline.cache.schema import run_name
from bottleneck_cache.pipeline.cache.schema import shard_filename
from bottleneck_cache.pipeline.cache.schema import SPLITS
from bottleneck_cache.pipeline.cache.schema import SUFFIXES
from bottleneck_cache.pipeline.cache.schema import working_prefix
from bottleneck_cache.pipeline.cache.writer import CacheWriter

__all__ = [
    "Cache", "CacheError", "CacheInfo", "CacheMetadata", "CacheName", "CacheWriter",
    "FIDELITY_ATTRS", "FORMAT_NAME", "FORMAT_VERSION", "NAME_PATTERN", "PAIRED_ATTRIBUTES",
    "SPLITS", "SUFFIXES", "cache_filename", "is_hdf5_file", "is_parts_folder", "merge_parts",
    "pair_key", "parse_cache_filename", "part_filename", "parts_folder", "read_cache",
    "read_fidelity", "read_metadata", "read_part_header", "run_name", "shard_filename", "verify_cache",
    "working_prefix",
]
