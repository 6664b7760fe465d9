"""Image datasets: find, index and decode the images that stage one runs through a frozen network.

A dataset is loaded into one or two `Split`s ("train" and, when the dataset has one, "validation").
A split keeps its labels and ids in memory and decodes pixels on demand with `Split.load`, so a
folder of large photos costs only a list of paths until a batch is needed.

Supported formats (`FORMATS`), one module each, registered in `registry`:

* `folder`: `<root>/<class>/*.jpg`, or `<root>/train/<class>/...` (or `training/`) plus one of
  `val/`, `validation/`, `test/` with the same class folders. Beside split folders, any other
  top-level folder is refused (it would otherwise be taken for a class).
* `cifar10`: the CIFAR-10 python batches (`data_batch_1`..`5`, `test_batch`, `batches.meta`), read
  with an unpickler that accepts only plain data and NumPy arrays.
* `mnist`: IDX files, gzipped or not (`train-images-idx3-ubyte.gz`, `t10k-labels-idx1-ubyte`, ...).
* `gtsrb`: the official GTSRB layout (`Final_Training/Images/000NN/*.ppm` with `GT-000NN.csv`,
  `Final_Test/Images/*.ppm` with `GT-final_test.csv`).
* `npz`: a NumPy archive with `x`, `y` or Keras-style `x_train`, `y_train`, `x_test`, `y_test`.
* `pickle` (module `pickles`): Udacity-lab pickles, dicts with `features` and `labels` (`train.p`,
  `valid.p`).
* `digits`: scikit-learn's bundled 8x8 digits; needs no files.

The other modules: `core` (`Split`), `splitting` (`select_per_class`, `split_validation`,
`prepare_splits`), `decoding` (image decoding and `decode_images`, the one decode-and-skip loop),
`listing` (image files and class folders), `convert` (arrays of images and labels into splits),
`unpickler` (`load_data_pickle`) and `errors` (`DatasetError`).

Unpickling can run code. Udacity pickles (`pickle`) are read only with `allow_pickle=True`; the
CIFAR-10 batches are read with a data-only unpickler that refuses anything but dicts, lists, bytes and
NumPy arrays (with `allow_pickle=True`, with the plain unpickler).

This package uses NumPy, Pillow and scikit-learn only; it never imports TensorFlow.
"""

from bottleneck_cache.pipeline.datasets.cifar10 import CIFAR10_CLASS_NAMES
from bottleneck_cache.pipeline.datasets.cifar10 import CIFAR10_SUBFOLDER
from bottleneck_cache.pipeline.datasets.core import Split
from bottleneck_cache.pipeline.datasets.decoding import DecodedImages
from bottleneck_cache.pipeline.datasets.decoding import decode_images
from bottleneck_cache.pipeline.datasets.decoding import load_image_file
from bottleneck_cache.pipeline.datasets.decoding import to_rgb
from bottleneck_cache.pipeline.datasets.errors import DatasetError
from bottleneck_cache.pipeline.datasets.folder import TRAIN_FOLDERS
from bottleneck_cache.pipeline.datasets.folder import VALIDATION_FOLDERS
from bottleneck_cache.pipeline.datasets.gtsrb import GTSRB_SUBFOLDER
from bottleneck_cache.pipeline.datasets.listing import IMAGE_EXTENSIONS
from bottleneck_cache.pipeline.datasets.listing import image_files
from bottleneck_cache.pipeline.datasets.pickles import PICKLE_EXTENSIONS
from bottleneck_cache.pipeline.datasets.registry import FORMATS
from bottleneck_cache.pipeline.datasets.registry import REGISTRY
from bottleneck_cache.pipeline.datasets.registry import DatasetFormat
from bottleneck_cache.pipeline.datasets.registry import detect_format
from bottleneck_cache.pipeline.datasets.registry import load_dataset
from bottleneck_cache.pipeline.datasets.splitting import check_two_classes
from bottleneck_cache.pipeline.datasets.splitting import one_split_classes
from bottleneck_cache.pipeline.datasets.splitting import prepare_splits
from bottleneck_cache.pipeline.datasets.splitting import select_per_class
from bottleneck_cache.pipeline.datasets.splitting import split_validation
from bottleneck_cache.pipeline.datasets.unpickler import UnsafePickleError
from bottleneck_cache.pipeline.datasets.unpickler import load_data_pickle

__all__ = [
    "CIFAR10_CLASS_NAMES", "CIFAR10_SUBFOLDER", "DatasetError", "DatasetFormat", "DecodedImages", "FORMATS",
    "GTSRB_SUBFOLDER", "IMAGE_EXTENSIONS", "PICKLE_EXTENSIONS", "REGISTRY", "Split", "TRAIN_FOLDERS",
    "UnsafePickleError", "VALIDATION_FOLDERS", "check_two_classes", "decode_images", "detect_format",
    "image_files", "load_data_pickle", "load_dataset", "load_image_file", "one_split_classes",
    "prepare_splits", "select_per_class", "split_validation", "to_rgb",
]
