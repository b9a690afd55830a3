"""End to end on the embedded dataset: distill, read back, resume byte-identically, errors."""

from __future__ import annotations

import dataclasses
import hashlib
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from infer_data import InferDataset, iter_groups, read_index
from infer_data.errors import ConfigError, DatasetNotFoundError
from infer_distill.config import OptimConfig, TeacherSpec, create_preset
from infer_distill.pipeline import Progress, distill
from infer_distill.sources import create_source
from infer_distill.workdir import WORK_DIRNAME


def _cfg(teachers: dict[str, Path], **kw: object):  # type: ignore[no-untyped-def]
    base = create_preset("embedded", ipc=3, teachers=(TeacherSpec("convnet", str(teachers["a"])), TeacherSpec("convnet", str(teachers["b"]))),
                         batch_groups=1, seed=4)
    return dataclasses.replace(base, optim=OptimConfig(iterations=4), **kw)


def _shard_bytes(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(root.glob("*.tar"))}


def test_end_to_end_tiny_distill(tmp_path: Path, embedded_teachers: dict[str, Path]) -> None:
    start = time.perf_counter()
    seen: list[Progress] = []
    index = distill(_cfg(embedded_teachers), tmp_path / "out", progress=lambda p: seen.append(dataclasses.replace(p)))
    assert time.perf_counter() - start < 60
    assert (index.method.k, index.method.m, index.method.g) == (10, 2, 2)  # floor(3 / (2/10 + 1)) = 2
    assert seen[-1].groups_done == 2 and seen[-1].steps_done == seen[-1].steps_total == 2 * 2 * 4
    assert not (tmp_path / "out" / WORK_DIRNAME).exists()
    idx = read_index(tmp_path / "out")
    prov = idx.provenance
    assert prov["config"]["optim"]["iterations"] == 4 and prov["seed"] == 4
    assert [t["sha256"] for t in prov["teachers"]] == [hashlib.sha256(p.read_bytes()).hexdigest()
                                                         for p in (embedded_teachers["a"], embedded_teachers["b"])]
    assert idx.dataset.source == "embedded" and idx.dataset.mean == create_source("embedded").mean
    ds = InferDataset(tmp_path / "out")
    assert len(ds) == 2 * 10 * 3
    src = create_source("embedded")
    x0, y0 = ds[0]  # group 0, view 0, slot 0: the real image of class 0
    assert x0.shape == (1, 28, 28) and y0.shape == (10,)
    assert torch.allclose(y0, torch.from_numpy(next(iter_groups(tmp_path / "out", idx)).labels[0]).float(), atol=1e-2)
    used: set[int] = set()
    records = list(iter_groups(tmp_path / "out", idx))
    assert len(records) == 2
    for rec in records:
        assert rec.class_ids.tolist() == list(range(10))
        assert src.targets[torch.from_numpy(rec.source_indices)].tolist() == list(range(10))
        assert np.array_equal(rec.bases, src.images(torch.from_numpy(rec.source_indices)).numpy())
        used |= set(rec.source_indices.tolist())
        assert rec.compensators.shape == (2, 1, 28, 28) and np.abs(rec.compensators).max() > 0
        assert rec.labels.shape == (30, 10)
    assert len(used) == 20  # no base image used twice


def test_resume_gives_byte_identical_shards(tmp_path: Path, embedded_teachers: dict[str, Path]) -> None:
    cfg = _cfg(embedded_teachers)
    distill(cfg, tmp_path / "full")

    class Interrupt(Exception):
        pass

    def stop_after_first_group(p: Progress) -> None:
        if p.groups_done == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        distill(cfg, tmp_path / "resumed", progress=stop_after_first_group)
    work = tmp_path / "resumed" / WORK_DIRNAME
    assert sorted(p.name for p in work.glob("group-*.npz")) == ["group-000000.npz"]
    assert not (tmp_path / "resumed" / "index.json").exists()
    first = []
    distill(cfg, tmp_path / "resumed", progress=lambda p: first.append(p.groups_done))
    assert first[0] == 1  # it resumed instead of starting over
    assert _shard_bytes(tmp_path / "resumed") == _shard_bytes(tmp_path / "full")


def test_random_real_baseline_has_no_compensators(tmp_path: Path, embedded_teachers: dict[str, Path]) -> None:
    cfg = _cfg(embedded_teachers, compensators=False)
    index = distill(cfg, tmp_path / "base")
    assert (index.method.m, index.method.g, index.method.teachers) == (0, 3, [])
    assert [t["role"] for t in index.provenance["teachers"]] == ["label", "label"]
    ds = InferDataset(tmp_path / "base")
    assert len(ds) == 30


def test_pipeline_errors(tmp_path: Path, embedded_teachers: dict[str, Path]) -> None:
    cfg = _cfg(embedded_teachers)
    with pytest.raises(ConfigError, match="no teacher given; pass at least one --teacher"):
        distill(dataclasses.replace(cfg, teachers=()), tmp_path / "x")
    with pytest.raises(ConfigError, match=r"--ipc 1 is too small for one group"):
        distill(dataclasses.replace(cfg, ipc=1), tmp_path / "x")
    with pytest.raises(DatasetNotFoundError, match="imagefolder:/nowhere: no such folder"):
        distill(dataclasses.replace(cfg, dataset="imagefolder:/nowhere"), tmp_path / "x")
    with pytest.raises(ConfigError, match=r"holds a convnet but architecture resnet18 was requested"):
        distill(dataclasses.replace(cfg, teachers=(TeacherSpec("resnet18", str(embedded_teachers["a"])),)), tmp_path / "x")

    def interrupt(p: Progress) -> None:
        if p.groups_done:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        distill(cfg, tmp_path / "y", progress=interrupt)
    with pytest.raises(ConfigError, match=r"\.infer-work holds an interrupted run with other arguments"):
        distill(dataclasses.replace(cfg, seed=5), tmp_path / "y")
    distill(cfg, tmp_path / "y")
    with pytest.raises(ConfigError, match="already holds a distilled dataset"):
        distill(cfg, tmp_path / "y")


def test_imagefolder_rgb_with_the_imagenet_augmentations(tmp_path: Path, teacher_checkpoint) -> None:  # type: ignore[no-untyped-def]
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in ("cat", "dog", "eel"):
        (tmp_path / "data" / "train" / c).mkdir(parents=True)
        (tmp_path / "data" / "val" / c).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (20, 16, 3), dtype=np.uint8)).save(tmp_path / "data" / "train" / c / f"{i}.png")
    ckpt = teacher_checkpoint(tmp_path / "t.pt", "resnet18", seed=0, num_classes=3, in_channels=3, image_size=12)
    cfg = create_preset("imagenet1k", dataset=f"imagefolder:{tmp_path / 'data'}", image_size=12, ipc=2,
                        teachers=(TeacherSpec("resnet18", str(ckpt)),))
    cfg = dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, iterations=2))
    assert cfg.augment.resized_crop and cfg.augment.flip and cfg.augment.jitter == 32
    index = distill(cfg, tmp_path / "out")
    assert index.dataset.image_shape == (3, 12, 12) and index.dataset.classes == ["cat", "dog", "eel"]
    assert (index.method.k, index.method.m, index.method.g) == (3, 1, 1)  # floor(2 / (1/3 + 1)) = 1
    assert index.dataset.source == f"imagefolder:{tmp_path / 'data'}"
    assert index.provenance["source_size"] == {"images": 9, "bytes": 9 * 3 * 12 * 12,
                                               "note": "raw uint8 bytes of the source's train split at the stored image shape"}
    ds = InferDataset(tmp_path / "out")
    assert len(ds) == 6 and ds[0][0].shape == (3, 12, 12)
