"""Measure the bytes-per-value constants that `infer plan` uses for entropy-coded codecs.

`infer plan` predicts the size of a distilled set before any work. Sizes of uncompressed
``.npy`` members and tar framing are exact; PNG, JPEG and zstd sizes depend on the content, so
the planner multiplies the raw size by constants measured here on real images, encoded with
the project's own codecs at their default levels, stacked as the writer stacks a group's K
bases (PNG, npy + zstd, JPEG and, where registered, WebP at qualities 50 to 100):

- ``--cifar``: the CIFAR-10 JPEG copy (``train/`` of an image folder), groups of K = 10, 32 px;
- ``--tiny``: the Tiny-ImageNet-200 32 px copy, groups of K = 200;
- the embedded Fashion-MNIST subset (grayscale 28 px, K = 10);
- ``--photos``: natural photos (any folder of PNG/JPEG files larger than 256 px), resized to a
  shorter side of 256 and centre-cropped to 224 px as ImageNet evaluation does, then also
  downscaled to 64 px: the 224 px and 64 px constants;
- ``--distilled``: a real distilled set (e.g. ``infer distill`` on the CIFAR-10 copy): the
  zstd ratios of its compensators and labels, and how much larger a JPEG q75 composite
  (base + compensator) is than its base alone.

It prints one Python literal per table, ready for ``infer_distill/planner.py``, and the
numbers behind them. Usage::

    python bench/plan_constants.py --cifar /tmp/cifar10/train --tiny /tmp/tiny32/train \\
        --photos /tmp/photos --distilled /tmp/c10-ipc10
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from infer_data.codecs import create_codec, list_codecs
from infer_data.export import encode_image

QUALITIES = (50, 75, 90, 95, 100)


def folder_groups(train: Path, k: int, groups: int) -> np.ndarray:
    """uint8 (groups, K, C, H, W): image i of each of the first K class folders (sorted)."""
    classes = sorted(p for p in train.iterdir() if p.is_dir())[:k]
    out = []
    for g in range(groups):
        files = [sorted(c.iterdir())[g] for c in classes]
        out.append(np.stack([np.asarray(Image.open(f).convert("RGB")).transpose(2, 0, 1) for f in files]))
    return np.stack(out)


def embedded_groups(groups: int) -> np.ndarray:
    """uint8 (groups, 10, 1, 28, 28) from the embedded subset, one image per class."""
    from infer_distill.embedded import load_embedded

    images, labels, _, _ = load_embedded("train")
    per_class = [images[labels == c] for c in range(10)]
    return np.stack([np.stack([per_class[c][g] for c in range(10)]) for g in range(groups)])


def photo_tiles(folder: Path, side: int) -> np.ndarray:
    """uint8 (1, N, 3, side, side): each photo's centre 224 crop at shorter side 256, resized to ``side``.

    One crop per photo: overlapping crops of one photo would let zstd's long window find the
    shared pixels and understate the ``npy`` constant.
    """
    tiles = []
    for f in sorted(folder.iterdir()):
        im = Image.open(f).convert("RGB")
        scale = 256 / min(im.size)
        im = im.resize((round(im.size[0] * scale), round(im.size[1] * scale)), Image.BICUBIC)
        left, top = (im.size[0] - 224) // 2, (im.size[1] - 224) // 2
        crop = im.crop((left, top, left + 224, top + 224))
        if side != 224:
            crop = crop.resize((side, side), Image.BICUBIC)
        tiles.append(np.asarray(crop).transpose(2, 0, 1))
    return np.stack(tiles)[None]


def base_constants(groups: np.ndarray) -> dict[str, float]:
    """Stored bytes per uint8 value of each base codec, and of one JPEG q75 file per image."""
    values = groups.size
    lossy = [n for n in ("jpeg", "webp") if n in list_codecs("base")]
    codecs = {"png": create_codec("base", "png"), "npy": create_codec("base", "npy"),
              **{f"{n}:{q}": create_codec("base", {"name": n, "quality": q}) for n in lossy for q in QUALITIES}}
    if "webp" in lossy:
        codecs["webp:lossless"] = create_codec("base", {"name": "webp", "lossless": True})
    sizes = dict.fromkeys([*codecs, "file_jpeg:75"], 0)
    for group in groups:
        codecs = {n: c.for_shape(group.shape) if hasattr(c, "for_shape") else c for n, c in codecs.items()}
        for name, codec in codecs.items():
            sizes[name] += sum(len(b) for b in codec.encode(group).values())
        sizes["file_jpeg:75"] += sum(len(encode_image(img.transpose(1, 2, 0), "jpeg", 75)) for img in group)
    return {name: round(n / values, 4) for name, n in sizes.items()}


def distilled_constants(root: Path) -> dict[str, float]:
    """zstd-19 size over raw size for compensators and labels of a real set, and composite/base JPEG growth."""
    from infer_data import iter_groups, read_index

    raw = dict.fromkeys(("fp16", "int8", "labels_fp16", "labels_topk"), 0)
    packed = dict(raw)
    jpeg_base = jpeg_comp = 0
    for rec in iter_groups(root, read_index(root)):
        for key, field, spec in (("fp16", "compensators", "fp16"), ("int8", "compensators", "int8"),
                                 ("labels_fp16", "labels", "fp16"), ("labels_topk", "labels", "topk")):
            arr = rec.compensators if field == "compensators" else rec.labels
            raw[key] += sum(len(b) for b in create_codec(field, {"name": spec, "zstd_level": None}).encode(arr).values())
            packed[key] += sum(len(b) for b in create_codec(field, spec).encode(arr).values())
        for u in rec.compensators:
            comp = (np.clip(rec.bases / 255.0 + u[None], 0, 1) * 255).round().astype(np.uint8)  # compose()'s clamp, as uint8
            jpeg_comp += sum(len(encode_image(x.transpose(1, 2, 0), "jpeg", 75)) for x in comp)
            jpeg_base += sum(len(encode_image(x.transpose(1, 2, 0), "jpeg", 75)) for x in rec.bases)
    out = {f"zstd_{k}": round(packed[k] / raw[k], 4) for k in raw}
    out["composite_over_base_jpeg75"] = round(jpeg_comp / max(jpeg_base, 1), 4)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cifar", type=Path, required=True)
    p.add_argument("--tiny", type=Path, required=True)
    p.add_argument("--photos", type=Path, required=True)
    p.add_argument("--distilled", type=Path, default=None)
    a = p.parse_args()
    sets = {
        "gray28 (embedded Fashion-MNIST, 20 groups of K=10)": embedded_groups(20),
        "rgb32 (CIFAR-10 JPEG copy, 20 groups of K=10)": folder_groups(a.cifar, 10, 20),
        "rgb32 (Tiny-ImageNet 32 px copy, 2 groups of K=200)": folder_groups(a.tiny, 200, 2),
        "rgb64 (photos, centre crops downscaled)": photo_tiles(a.photos, 64),
        "rgb224 (photos, centre crops)": photo_tiles(a.photos, 224),
    }
    for name, groups in sets.items():
        print(f"{name}: {groups.shape[0] * groups.shape[1]} images -> {base_constants(groups)}")
    if a.distilled:
        print(f"distilled set {a.distilled}: {distilled_constants(a.distilled)}")


if __name__ == "__main__":
    main()
