#!/usr/bin/env bash
# GPU check of the training path, one script, under ~8 minutes on one H100/H200. Run from the project root:
#   bash bench/device_check.sh            (writes $OUT, default runs/device_check)
# (a) training-step throughput ratios on the GPU (bench/train.py, ResNet-18 student);
# (b) DeviceLoader alone in instances/s and as a fraction of the device's copy bandwidth;
# (c) a ResNet-18 teacher on the CIFAR-10 JPEG copy, INFER distillation at ipc 10 and 50, and
#     ResNet-18 students with static and dynamic labels (paper: 32.0 / 60.4 static, 30.7 / 60.7 dynamic,
#     with four teachers; this check uses one, so M = 1).
# Epoch counts are shortened to fit the time limit; override with the variables below.
set -euo pipefail
OUT=${OUT:-runs/device_check}
DATA=${DATA:-/tmp/cifar10}
EPOCHS_10=${EPOCHS_10:-400}     # static-label epochs at ipc 10 (paper: 400)
EPOCHS_50=${EPOCHS_50:-100}     # static-label epochs at ipc 50 (paper: 400)
DYN_10=${DYN_10:-80}            # dynamic-label epochs at ipc 10 (paper: 80)
DYN_50=${DYN_50:-40}            # dynamic-label epochs at ipc 50 (paper: 80)
PY=.venv/bin/python
INFER=.venv/bin/infer
mkdir -p "$OUT"
if [ ! -d "$DATA/train" ]; then
  mkdir -p "$DATA" && tar -xzf ../shared/data/cifar10-jpeg.tar.gz -C "$DATA"
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"

# (a) + (b)
$PY bench/train.py --cifar "$DATA/train" --device cuda --arch resnet18 --epochs 5 --steps 40 \
  --json "$OUT/train_bench.json" | tee "$OUT/train_bench.txt"

# (c)
$INFER teacher train --dataset "imagefolder:$DATA" --arch resnet18 --epochs 15 --batch-size 512 \
  --lr 0.2 --out "$OUT/resnet18.pt" --json | tee "$OUT/teacher.json"
for ipc in 10 50; do
  if [ "$ipc" = 10 ]; then static=$EPOCHS_10; dyn=$DYN_10; else static=$EPOCHS_50; dyn=$DYN_50; fi
  $INFER distill --dataset "imagefolder:$DATA" --preset cifar10 --ipc "$ipc" \
    --teacher "resnet18=$OUT/resnet18.pt" --out "$OUT/c10-ipc$ipc" --no-progress
  $INFER evaluate "$OUT/c10-ipc$ipc" --test-data "imagefolder:$DATA" --preset cifar --arch resnet18 \
    --epochs "$static" --eval-every 20 --json --no-progress > "$OUT/eval-ipc$ipc-static.json"
  $INFER evaluate "$OUT/c10-ipc$ipc" --test-data "imagefolder:$DATA" --preset cifar --arch resnet18 \
    --labels dynamic --teacher "resnet18=$OUT/resnet18.pt" --epochs "$dyn" --eval-every 20 --json --no-progress \
    > "$OUT/eval-ipc$ipc-dynamic.json"
done
$PY - "$OUT" <<'PY'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
paper = {("10", "static"): 32.0, ("50", "static"): 60.4, ("10", "dynamic"): 30.7, ("50", "dynamic"): 60.7}
for (ipc, labels), ref in paper.items():
    r = json.loads((out / f"eval-ipc{ipc}-{labels}.json").read_text())
    print(f"ipc {ipc} {labels:<8} top1 {r['top1']:.2f}% (best epoch {r['best_top1']:.2f}%, {r['config']['epochs']} epochs)  paper {ref}")
PY
