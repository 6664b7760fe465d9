#!/usr/bin/env bash
# The GPU path, checked on a machine with an NVIDIA GPU, in under 10 minutes (after the install).
#
# NOT RUN YET: no GPU machine was available when this script was written; its first run on one is its
# test. Put what it prints in the README's "Speed" section.
#
# What it does:
#   1. installs the project with the `gpu` extra (TensorFlow with CUDA and cuDNN wheels) into a fresh
#      virtual environment, from PyPI, or from a folder of wheels brought along (first argument) on a
#      machine without a registry; VENV=/path/to/venv reuses one instead;
#   2. writes 2,000 synthetic JPEGs (train/ 1,600 and val/ 400, two classes) and, beside them, a
#      subset of the first REFERENCE_IMAGES of them (same relative paths, hence the same sample ids);
#   3. for VGG16@224 and ResNet50@224, with random weights saved once to a file (so that the CPU and
#      the GPU runs use bit-identical weights), extracts:
#        - a CPU float32 reference of the subset (CUDA_VISIBLE_DEVICES=-1, --precision=float32);
#        - all 2,000 images on the GPU with --engine=auto and with --engine=keras;
#   4. prints, per run: images/s of the whole command (start-up included), the engine and precision
#      the cache records, its fidelity attributes, and the cosine similarity of each of its rows to
#      the CPU float32 row of the same image (median and minimum over the subset).
#
# Usage: benchmarks/gpu_check.sh [WHEELS_DIR]     (from any folder; IMAGES=, REFERENCE_IMAGES= to change)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WHEELS="${1:-}"
IMAGES="${IMAGES:-2000}"
REFERENCE_IMAGES="${REFERENCE_IMAGES:-200}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/bottleneck-gpu-check.XXXXXX")"
export BOTTLENECK_CACHE_HOME="$WORK/home"
export TF_CPP_MIN_LOG_LEVEL=2
cd "$ROOT"

echo "# GPU check, $(date -u '+%Y-%m-%d %H:%M UTC'), work folder $WORK"
if ! command -v nvidia-smi >/dev/null; then
  echo "Expected an NVIDIA GPU (nvidia-smi). Received: none on $(hostname). Run this on a GPU machine." >&2
  exit 1
fi
nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv,noheader
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"

if [ -n "${VENV:-}" ]; then
  PY="$VENV/bin/python"
else
  started=$(date +%s)
  python3 -m venv "$WORK/venv"
  PY="$WORK/venv/bin/python"
  if [ -n "$WHEELS" ]; then
    "$PY" -m pip install -q --no-index --find-links "$WHEELS" -e ".[gpu]"
  else
    "$PY" -m pip install -q -e ".[gpu]"
  fi
  echo "install: $(( $(date +%s) - started )) s (not counted in the 10 minutes)"
fi
"$PY" -c "import tensorflow as tf; print('tensorflow', tf.__version__, 'gpus', tf.config.list_physical_devices('GPU'))"

"$PY" - "$WORK" "$IMAGES" "$REFERENCE_IMAGES" <<'EOF'
import os, sys
import numpy as np
from PIL import Image
work, count, subset = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(0)
for i in range(count):
    split = "train" if i < count * 4 // 5 else "val"
    relative = os.path.join(split, f"class_{i % 2}", f"{i:06d}.jpg")
    small = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    image = Image.fromarray(small).resize((256, 256), Image.BILINEAR)
    for root in ("data", "subset") if (i % (count * 4 // 5)) < subset // 2 else ("data",):
        path = os.path.join(work, root, relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        image.save(path, quality=90)
print(f"wrote {count} JPEGs to {work}/data, {subset} of them also to {work}/subset")
EOF

report() {  # report NAME STARTED ENDED CACHE_DIR REFERENCE_DIR (times from date +%s.%N)
  "$PY" - "$@" <<'EOF'
import glob, json, sys
import numpy as np
from bottleneck_cache.features import precision as precisions
from bottleneck_cache.pipeline import cache
name, folder, reference = sys.argv[1], sys.argv[4], sys.argv[5]
seconds = float(sys.argv[3]) - float(sys.argv[2])
rows, mine, theirs = 0, [], []
for split in ("train", "validation"):
    ours = cache.read_cache(glob.glob(f"{folder}/*_{split}.h5")[0])
    cpu = cache.read_cache(glob.glob(f"{reference}/*_{split}.h5")[0])
    rows += len(ours.filenames)
    index = {f: i for i, f in enumerate(cpu.filenames)}
    shared = [i for i, f in enumerate(ours.filenames) if f in index]
    mine.append(ours.features[shared])
    theirs.append(cpu.features[[index[ours.filenames[i]] for i in shared]])
cosine = precisions.cosine_rows(np.concatenate(mine), np.concatenate(theirs))
print(f"| {name} | {rows / seconds:.1f} | {ours.metadata.engine} | {ours.metadata.precision} | "
      f"{json.dumps(cache.read_fidelity(ours.path))} | {np.median(cosine):.6f} / {cosine.min():.6f} "
      f"({len(cosine)} images) |")
EOF
}

RESULTS=()
for network in vgg16 resnet50; do
  weights="$WORK/$network.weights.h5"
  CUDA_VISIBLE_DEVICES=-1 "$PY" -c "
import keras
from bottleneck_cache.features import networks
keras.utils.set_random_seed(0)
model = networks.build_feature_model(networks.get_network('$network'), 'none', 'avg', None, (224, 224))
model.save_weights('$weights')"
  common=(--network="$network" --weights="$weights" --input_size=224)
  CUDA_VISIBLE_DEVICES=-1 "$PY" -m bottleneck_cache.bin.extract_features "${common[@]}" --dataset_dir="$WORK/subset" \
      --output_dir="$WORK/cpu-$network" --precision=float32 2>"$WORK/cpu-$network.log"
  grep -E "Running|precision" "$WORK/cpu-$network.log" || true
  for engine in auto keras; do
    started=$(date +%s.%N)
    "$PY" -m bottleneck_cache.bin.extract_features "${common[@]}" --dataset_dir="$WORK/data" \
        --output_dir="$WORK/gpu-$network-$engine" --engine="$engine" 2>"$WORK/gpu-$network-$engine.log"
    ended=$(date +%s.%N)
    grep -E "Running|precision" "$WORK/gpu-$network-$engine.log" || true
    line=$(report "$network@224 --engine=$engine" "$started" "$ended" "$WORK/gpu-$network-$engine" \
           "$WORK/cpu-$network")
    RESULTS+=("$line")
  done
done

echo
echo "| run | images/s (whole command) | engine | precision | fidelity recorded | cosine to CPU float32: median / min |"
echo "|---|---|---|---|---|---|"
printf '%s\n' "${RESULTS[@]}"
echo
echo "done $(date -u '+%H:%M UTC'); load $(cut -d' ' -f1-3 /proc/loadavg). Work folder kept: $WORK"
