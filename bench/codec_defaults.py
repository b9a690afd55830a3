"""Codec costs at ImageNet shape (224 px): bytes and encode time per level, side by side.

Prints, for photo-like 224 x 224 RGB bases, PNG at every compress_level and JPEG/WebP at
common qualities, and for compensators (fp16) and labels (fp16, K = 1000) zstd at several
levels: stored bytes and their ratio to the raw array, encode wall and CPU seconds, the CPU
cost as a ratio to the cheapest setting of the same field measured in the same run, and decode
wall seconds. Settings run round robin ``--repeats`` times and the best run counts. Absolute
times depend on the machine and its load; compare the ratios.

    python bench/codec_defaults.py               # 100 bases, one group's compensators and labels
    python bench/codec_defaults.py --k 1000 --only png:1 jpeg:90   # one ImageNet-shaped group

The bases come from :func:`photo_like` (a dead-leaves model: occluding discs of power-law sizes
with shading and texture, rendered anti-aliased, plus sensor noise), which has the edges,
flat regions and texture that decide PNG and JPEG sizes. Upscaled 32-px images would be far
smoother, and uniform noise far less compressible, than real 224-px photos.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from infer_data.codecs import create_codec  # noqa: E402


def _pink_bank(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` float32 (size, size) fields with a 1/f amplitude spectrum, unit std."""
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(size), np.fft.fftfreq(size), indexing="ij"))
    f[0, 0] = 1.0
    spec = (rng.standard_normal((n, size, size)) + 1j * rng.standard_normal((n, size, size))) / f
    out = np.fft.ifft2(spec).real.astype(np.float32)
    return out / out.std(axis=(1, 2), keepdims=True)


def photo_like(k: int, h: int = 224, w: int = 224, seed: int = 0, discs: int = 70) -> np.ndarray:
    """uint8 (k, 3, h, w) photo-like images (dead-leaves model), deterministic for a seed.

    Each image is painted back to front with ``discs`` anti-aliased discs whose radii follow a
    power law (many small, few large, as in natural scenes), each with a colour, a linear
    shading and a 1/f texture of random strength; sensor noise (std 2 levels) is added last.
    """
    rng = np.random.default_rng(seed)
    size = max(h, w)
    bank = _pink_bank(8, 2 * size, rng)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.empty((k, 3, h, w), np.uint8)
    for i in range(k):
        img = np.broadcast_to(rng.uniform(40, 200, (3, 1, 1)).astype(np.float32), (3, h, w)).copy()
        img += 25 * bank[rng.integers(8), :h, :w]
        radii = np.minimum(4.0 * (1 - rng.random(discs)) ** -0.9, size / 1.5)  # power law, 4 px and up
        for r in np.sort(radii)[::-1]:  # large ones behind
            cy, cx = rng.uniform(-r / 2, h + r / 2), rng.uniform(-r / 2, w + r / 2)
            y0, y1, x0, x1 = max(int(cy - r - 1), 0), min(int(cy + r + 2), h), max(int(cx - r - 1), 0), min(int(cx + r + 2), w)
            if y0 >= y1 or x0 >= x1:
                continue
            ys, xs = yy[y0:y1, x0:x1], xx[y0:y1, x0:x1]
            alpha = np.clip(r - np.hypot(ys - cy, xs - cx) + 0.5, 0, 1)  # anti-aliased edge
            gray = rng.uniform(20, 235)
            color = np.clip(gray + rng.normal(0, 35, (3, 1, 1)), 0, 255).astype(np.float32)
            shade = rng.normal(0, 30) * ((ys - cy) * rng.normal() + (xs - cx) * rng.normal()) / (2 * r)
            oy, ox = rng.integers(size, size=2)
            tex = rng.exponential(8) * bank[rng.integers(8), oy : oy + y1 - y0, ox : ox + x1 - x0]
            img[:, y0:y1, x0:x1] = img[:, y0:y1, x0:x1] * (1 - alpha) + alpha * (color + shade + tex)
        img += rng.normal(0, 2.0, img.shape).astype(np.float32)
        out[i] = np.clip(img, 0, 255).round().astype(np.uint8)
    return out


def compensator_like(m: int, h: int = 224, w: int = 224, seed: int = 0) -> np.ndarray:
    """float32 (m, 3, h, w) deltas in [0, 1] units: 1/f structure plus fine noise, std about 0.06."""
    rng = np.random.default_rng(seed)
    bank = _pink_bank(3 * m, max(h, w), rng)[:, :h, :w].reshape(m, 3, h, w)
    return (0.05 * bank + 0.03 * rng.standard_normal((m, 3, h, w))).astype(np.float32)


def logits_like(k: int, m: int, nc: int, seed: int = 0) -> np.ndarray:
    """float32 (k*(m+1), nc) ensemble logits: N(0, 1.5) background, the instance's class at about 9."""
    rng = np.random.default_rng(seed)
    y = rng.normal(0, 1.5, (k * (m + 1), nc)).astype(np.float32)
    rows = np.arange(k * (m + 1))
    y[rows, rows % k % nc] += rng.normal(9, 2, rows.size).astype(np.float32)
    return y


def time_encode(field: str, spec: dict, arr: np.ndarray, repeats: int = 1) -> dict[str, float]:
    """Encode then decode ``arr`` with a codec as ShardWriter uses it, ``repeats`` times.

    Returns the best of the runs: ``encode_s`` and ``decode_s`` (wall seconds), ``encode_cpu_s``
    (CPU seconds of all threads, steadier than wall time on a shared machine) and ``bytes``
    stored. ``field`` is "base", "compensators" or "labels"; bases are uint8 (K, C, H, W).
    """
    codec = create_codec(field, spec, base_shape=arr.shape if field == "base" else None)
    best = {"encode_s": float("inf"), "encode_cpu_s": float("inf"), "decode_s": float("inf"), "bytes": 0.0}
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        members = codec.encode(arr)
        t1, c1 = time.perf_counter(), time.process_time()
        codec.decode(members, arr.shape, "bench")
        run = {"encode_s": t1 - t0, "encode_cpu_s": c1 - c0, "decode_s": time.perf_counter() - t1}
        best = {k: min(v, run[k]) if k in run else v for k, v in best.items()}
        best["bytes"] = float(sum(len(b) for b in members.values()))
    return best


def parse(text: str) -> tuple[str, dict]:
    """``png:1`` -> ("base", {"name": "png", "compress_level": 1}); ``comp:3``/``label:3`` -> zstd levels."""
    name, _, value = text.partition(":")
    if name in ("comp", "label"):
        return ("compensators" if name == "comp" else "labels"), {"name": "fp16", "zstd_level": int(value)}
    if name == "webpll":
        return "base", {"name": "webp", "lossless": True}
    key = {"png": "compress_level", "jpeg": "quality", "webp": "quality"}[name]
    return "base", {"name": name, key: int(value)}


DEFAULT_SET = ["png:0", "png:1", "png:3", "png:6", "png:9", "jpeg:75", "jpeg:90", "jpeg:95", "webp:90",
               "comp:1", "comp:3", "comp:9", "comp:19", "label:1", "label:3", "label:9", "label:19"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--k", type=int, default=100, help="base images (and K of the labels), default 100")
    ap.add_argument("--m", type=int, default=4, help="compensators per group, default 4")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--only", nargs="*", default=DEFAULT_SET, help="settings such as png:1 jpeg:90 comp:3 label:3")
    args = ap.parse_args()
    data = {"base": photo_like(args.k), "compensators": compensator_like(args.m),
            "labels": logits_like(max(args.k, 1000), args.m, 1000)}
    raw = {f: a.nbytes if f == "base" else a.astype(np.float16).nbytes for f, a in data.items()}
    print(f"bases {data['base'].shape}, compensators {data['compensators'].shape}, labels {data['labels'].shape} (fp16 raw)")
    best: dict[str, dict[str, float]] = {}
    for _ in range(args.repeats):  # round robin, so load from other processes spreads over all settings
        for text in args.only:
            field, spec = parse(text)
            run = time_encode(field, spec, data[field])
            best[text] = {k: min(v, best[text][k]) for k, v in run.items()} if text in best else run
    fields = {text: parse(text)[0] for text in args.only}
    cheapest = {f: min(best[t]["encode_cpu_s"] for t in args.only if fields[t] == f) for f in set(fields.values())}
    print(f"{'setting':10} {'field':13} {'bytes':>12} {'of raw':>7} {'enc wall s':>10} {'enc cpu s':>9} {'x cheapest':>10} "
          f"{'dec wall s':>10} {'enc cpu s/1000 img':>18}")
    for text in args.only:
        r, field = best[text], fields[text]
        per1000 = f"{r['encode_cpu_s'] * 1000 / args.k:18.2f}" if field == "base" else ""
        print(f"{text:10} {field:13} {int(r['bytes']):12d} {r['bytes'] / raw[field]:7.3f} {r['encode_s']:10.3f} "
              f"{r['encode_cpu_s']:9.3f} {r['encode_cpu_s'] / cheapest[field]:10.1f} {r['decode_s']:10.3f} {per1000}")

if __name__ == "__main__":
    main()
