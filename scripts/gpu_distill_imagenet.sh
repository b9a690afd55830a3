#!/usr/bin/env bash
# ============================================================================================
# NOT RUN YET. This script has never been executed: no GPU was available when it was written.
# Treat its first run as a test of the script itself.
# ============================================================================================
#
# Distill an ImageNet-shaped set with torchrun and report the producer's speed per GPU.
#
#   K = 1000 classes, 224 x 224 RGB, M = 1 teacher (torchvision ResNet-18), ipc 3 -> G = 2 groups,
#   --shard-size 1 -> 2 shards: with 2 processes each GPU optimizes one group of 1000 images.
#
# Prints group-iterations/s per GPU (one group-iteration = one optimization step of one group's
# compensator: 1000 images forward and backward through the teacher), measured on rank 0 between
# its first and last optimization step with the GPU synchronized at both ends. Then runs the same
# distillation on 1 process and says whether the two results are byte-identical (on CUDA this
# also depends on cuDNN choosing deterministic kernels).
#
# A group's 1000 images go through the teacher in one batch (forward and backward at 224 px):
# expect tens of GiB of GPU memory per process; an H100 (80 GB) may be too small, an H200 is not.
#
# Needs: the repository's venv (make install), 2 GPUs (with 1 GPU it runs 1 process), no
# network: the teacher is torchvision's IMAGENET1K_V1 if those weights are in torch's cache,
# otherwise a randomly initialized ResNet-18 (the same speed).
#
#   bash scripts/gpu_distill_imagenet.sh              # ITER=200 steps per compensator
#   ITER=50 WORK=/tmp/in1k bash scripts/gpu_distill_imagenet.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
TORCHRUN=${TORCHRUN:-.venv/bin/torchrun}
ITER=${ITER:-200}
WORK=${WORK:-$(mktemp -d)}
NGPU=$(nvidia-smi -L | wc -l)
NPROC=$(( NGPU < 2 ? NGPU : 2 ))
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}
echo "work folder $WORK; $NGPU GPU(s), $NPROC process(es), $ITER iterations"

# 1. An ImageNet-shaped image folder: 1000 classes x 2 training images (JPEG, 256 x 256, smooth content).
"$PY" - "$WORK/data" <<'EOF'
import sys
from pathlib import Path

import numpy as np
from PIL import Image

root = Path(sys.argv[1]) / "train"
rng = np.random.default_rng(0)
yy, xx = np.mgrid[0:256, 0:256] / 256.0
for c in range(1000):
    folder = root / f"n{c:08d}"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(2):
        f = rng.uniform(1, 6, 3)
        img = np.stack([np.sin(2 * np.pi * (f[j] * xx + f[(j + 1) % 3] * yy) + j) for j in range(3)], -1)
        img = ((img * 0.5 + 0.5) * 255 + rng.normal(0, 8, img.shape)).clip(0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"{i}.jpg", quality=90)
print("wrote", sum(1 for _ in root.rglob("*.jpg")), "images to", root)
EOF

# 2. The teacher: torchvision's weights if cached, else a random ResNet-18 checkpoint.
TEACHER=$("$PY" - "$WORK/resnet18.pt" <<'EOF'
import sys
from pathlib import Path

import torch

from infer_distill.teachers import create_teacher, resolve_weights, save_teacher, weights_cache_dir

member = resolve_weights("resnet18", "IMAGENET1K_V1", num_classes=1000, in_channels=3, image_size=224)
if (Path(weights_cache_dir()) / member.url.rsplit("/", 1)[-1]).is_file():
    print("IMAGENET1K_V1")
else:
    torch.manual_seed(0)
    model = create_teacher("resnet18", 1000, in_channels=3, image_size=224)
    with torch.no_grad():
        model.train()(torch.rand(8, 3, 224, 224))  # move the BN running statistics off their defaults
    save_teacher(model, sys.argv[1], arch="resnet18", num_classes=1000, in_channels=3, image_size=224, meta={"random": True})
    print(sys.argv[1])
EOF
)
echo "teacher resnet18=$TEACHER"

# 3. The driver every rank runs: distill() with a progress callback that times rank 0's steps.
cat > "$WORK/rate.py" <<'EOF'
import dataclasses
import json
import sys
import time

import torch

from infer_distill.config import TeacherSpec, create_preset
from infer_distill.pipeline import distill

data, teacher, out, iterations = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
cfg = create_preset("imagenet1k", dataset=f"imagefolder:{data}", ipc=3, teachers=(TeacherSpec("resnet18", teacher),),
                    shard_size=1, base_codec="npy:3", compensator_codec="fp16:3", label_codec="fp16:3")
cfg = dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, iterations=iterations))
marks = {}


def progress(p):
    if p.steps_done in (1, iterations) and p.steps_done not in marks:
        torch.cuda.synchronize()
        marks[p.steps_done] = time.perf_counter()


start = time.perf_counter()
index = distill(cfg, out, progress=progress, device="cuda")
if 1 in marks and iterations in marks:  # rank 0: one group, steps 2 .. iterations timed
    rate = (iterations - 1) / (marks[iterations] - marks[1])
    print(json.dumps({"out": out, "groups": index.method.g, "shards": len(index.shards), "iterations": iterations,
                      "group_iterations_per_s_per_gpu": round(rate, 2), "wall_s": round(time.perf_counter() - start, 1),
                      "gpu": torch.cuda.get_device_name()}))
EOF

# 4. NPROC processes (one per GPU), then 1 process, and compare the bytes.
"$TORCHRUN" --standalone --nproc_per_node "$NPROC" "$WORK/rate.py" "$WORK/data" "$TEACHER" "$WORK/out-$NPROC" "$ITER"
CUDA_VISIBLE_DEVICES=0 "$PY" "$WORK/rate.py" "$WORK/data" "$TEACHER" "$WORK/out-1" "$ITER"
if diff <(cd "$WORK/out-$NPROC" && sha256sum index.json ./*.tar) <(cd "$WORK/out-1" && sha256sum index.json ./*.tar); then
    echo "byte-identical: $NPROC process(es) vs 1 process"
else
    echo "DIFFERENT bytes: $NPROC process(es) vs 1 process (non-deterministic CUDA kernels?)"
fi
