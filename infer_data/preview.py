"""A picture of one group: base images, compensators made visible, and the composites."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from .dataset import InferDataset
from .errors import ConfigError


def _tile(img: np.ndarray, scale: int) -> np.ndarray:
    """uint8 (C, H, W) -> (H*scale, W*scale, 3)."""
    hwc = img.transpose(1, 2, 0)
    if hwc.shape[2] == 1:
        hwc = np.repeat(hwc, 3, axis=2)
    return np.kron(hwc, np.ones((scale, scale, 1), dtype=np.uint8))


def preview_grid(ds: InferDataset, group: int = 0, *, max_classes: int = 10, min_size: int = 64) -> np.ndarray:
    """uint8 (H', W', 3) grid: row 0 the bases (after a blank cell), then per compensator its visualization and composites.

    Each row has ``min(K, max_classes)`` cells; a compensator u is shown as 0.5 + u / (2 max|u|)
    (grey = 0), repeated in the first cell of its row, followed by that row's composites.

    Raises:
        ConfigError: ``group`` out of range or ``max_classes`` < 1.
    """
    g_total = ds.index.num_groups
    if not 0 <= group < g_total:
        raise ConfigError(f"--group {group} is out of range; the dataset has groups 0..{g_total - 1}")
    if max_classes < 1:
        raise ConfigError(f"--max-classes {max_classes}: must be at least 1 (the number of base slots to draw)")
    k, m = ds.k, ds.m
    n = min(k, max_classes)
    h = ds.index.dataset.image_shape[1]
    scale = max(1, -(-min_size // h))
    grp = ds.group(group)
    bases = grp.bases[:n].numpy()
    blank = np.full_like(_tile(bases[0], scale), 255)
    rows = [[blank] + [_tile(b, scale) for b in bases]]
    for j in range(m):
        u = grp.compensators[j]
        vis = (0.5 + u / (2 * u.abs().max().clamp(min=1e-8))).mul(255).round().clamp(0, 255).to(torch.uint8).numpy()
        idx = torch.tensor([group * k * (m + 1) + (j + 1) * k + s for s in range(n)])
        x, _ = ds.compose_batch(idx)
        comp = x.mul(255).round().clamp(0, 255).to(torch.uint8).numpy()
        rows.append([_tile(vis, scale)] + [_tile(c, scale) for c in comp])
    pad = 2
    cell_h, cell_w = rows[0][0].shape[:2]
    width = max(len(r) for r in rows)
    canvas = np.full((len(rows) * (cell_h + pad) + pad, width * (cell_w + pad) + pad, 3), 255, np.uint8)
    for r, row in enumerate(rows):
        for c, cell in enumerate(row):
            y, x0 = pad + r * (cell_h + pad), pad + c * (cell_w + pad)
            canvas[y : y + cell_h, x0 : x0 + cell_w] = cell
    return canvas


def write_preview(root: str | os.PathLike[str], out: str | os.PathLike[str], *, group: int = 0, max_classes: int = 10) -> Path:
    """Draw group ``group`` of the dataset at ``root`` into the PNG file ``out``.

    Raises:
        ConfigError: ``out`` does not end in .png, ``group`` is out of range or ``max_classes`` < 1.
        InferError: the dataset fails to load.
    """
    from PIL import Image

    out = Path(out)
    if out.suffix.lower() != ".png":
        raise ConfigError(f"--out {out}: the preview is a PNG file; give a name ending in .png")
    ds = InferDataset(root, target="class")
    grid = preview_grid(ds, group, max_classes=max_classes)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    Image.fromarray(grid).save(tmp, format="PNG")
    os.replace(tmp, out)
    return out
