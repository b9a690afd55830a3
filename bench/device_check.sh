#!/usr/bin/env bash
# One prepared GPU check of official-mode INFER on CIFAR-10, meant to fit 8 minutes on one H100.
#
# NOT YET RUN ON A GPU. It has run end to end only on a 2-core CPU with --smoke; the full settings
# (bench/device_check.py, Settings) are sized from the design notes' anchors, not from a GPU run
# of this script. The JSON it prints carries per-stage seconds: check them on the first GPU run.
#
# What it does (details in bench/device_check.py): extracts the CIFAR-10 JPEG copy to a
# temporary folder; trains the 4 official-architecture teachers (ResNet-18, official CIFAR
# MobileNetV2, EfficientNet-B0, ShuffleNet g=2); distills ipc 10 with M = 4 in --mode official and
# the random-real set of the same budget; trains ResNet-18 students (static labels, dynamic labels,
# random-real at equal steps); times the producer batched vs one group at a time and DeviceLoader
# vs ImageFolder with 16 workers; prints ONE JSON line (also in $OUT/result.json).
# Paper, CIFAR-10 ipc 10, ResNet-18 student: 32.0 (static), 30.7 (dynamic).
#
#   bash bench/device_check.sh            # GPU run, results in $OUT (default runs/device_check)
#   bash bench/device_check.sh --smoke    # every stage on a few images per class, on the CPU
set -euo pipefail
SMOKE=()
DEVICE=()
if [ "${1:-}" = "--smoke" ]; then
  SMOKE=(--smoke)
  DEVICE=(--device cpu)
fi
OUT=${OUT:-runs/device_check${SMOKE:+-smoke}}
TAR=${TAR:-../shared/data/cifar10-jpeg.tar.gz}
PY=${PY:-.venv/bin/python}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
if [ ${#SMOKE[@]} -gt 0 ]; then
  # 12 train images per class (ipc 10 needs 10 distinct bases per class) and 5 test images
  tar -xzf "$TAR" -C "$TMP" --wildcards 'train/*/000[0-9].jpg' 'train/*/001[01].jpg' 'test/*/000[0-4].jpg'
else
  tar -xzf "$TAR" -C "$TMP"
fi
DATA=$TMP
if command -v nvidia-smi > /dev/null; then
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader >&2
fi
"$PY" bench/device_check.py --data "$DATA" --out "$OUT" "${SMOKE[@]}" "${DEVICE[@]}"
