"""infer_distill.planner: counts, the paper's ratios, exact bytes against the writer, sources."""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pytest
from builders import make_groups, write_dataset
from PIL import Image

from infer_data.codecs import encode_npy
from infer_data.errors import ConfigError, DatasetNotFoundError, FormatError
from infer_data import MethodInfo, ShardWriter
from infer_data.index import read_index
from infer_data.stats import KNOWN_DATASETS, stored_bytes
from infer_distill.plan_sources import KNOWN_SOURCES, source_size
from infer_distill.planner import Shape, field_bytes, make_plan, npy_bytes, shard_sizes, tar_member_bytes


@pytest.mark.parametrize(("ipc", "g", "stored", "instances", "paper"), [(10, 9, 9_036, 45_000, 0.81), (50, 49, 49_196, 245_000, 4.04)])
def test_imagenet_counts_and_paper_ratios(ipc: int, g: int, stored: int, instances: int, paper: float) -> None:
    p = make_plan("imagenet-1k", ipc, 4)
    assert (p.k, p.g, p.stored_images, p.instances, p.budget_images) == (1000, g, stored, instances, ipc * 1000)
    assert round(100 * p.ratios["paper"]["total"], 2) == paper
    # the convention charges budget images and one fp32 label each, so it does not depend on M
    assert make_plan("imagenet-1k", ipc, 3).ratios["paper"] == p.ratios["paper"]
    assert p.ratios["paper"]["labels"] == ipc * 1000 * 1000 * 4 / 147_897_477_120


def test_uncompressed_npy_sizes_are_exact() -> None:
    for dtype, shape in [(np.uint8, (4, 3, 8, 8)), (np.float16, (0, 1, 28, 28)), (np.uint16, (45, 21)), (np.float32, (7,)),
                         (np.float16, (5000, 1000))]:
        assert npy_bytes(dtype, shape) == len(encode_npy(np.zeros(shape, dtype), None)), (dtype, shape)


EXACT = {
    "base": {"name": "npy", "zstd_level": None},
    "compensators": {"name": "int8", "zstd_level": None},
    "labels": {"name": "topk", "k": 3, "zstd_level": None},
}


@pytest.mark.parametrize("codecs", [
    EXACT,
    {"base": {"name": "npy", "zstd_level": None}, "compensators": {"name": "fp16", "zstd_level": None},
     "labels": {"name": "fp16", "zstd_level": None}},
    {"base": {"name": "npy", "zstd_level": None}, "compensators": {"name": "fp16", "zstd_level": None}, "labels": "none"},
])
def test_field_bytes_equal_what_the_writer_stores(tmp_path: Path, codecs: dict) -> None:
    root = write_dataset(tmp_path / "ds", make_groups(3, 4, 2, (3, 8, 8), nc=6), codecs=codecs)
    on_disk = stored_bytes(root)
    s = Shape(k=4, m=2, g=3, nc=6, chw=(3, 8, 8))
    for name in ("base", "compensators", "labels"):
        spec = {"name": codecs[name]} if isinstance(codecs[name], str) else codecs[name]
        fb = field_bytes(name, "x", spec, s)
        assert not fb.estimate
        assert fb.bytes == getattr(on_disk, name), name


def test_tar_framing_and_shard_layout_match_the_writer(tmp_path: Path) -> None:
    groups = make_groups(5, 4, 2, (3, 8, 8))
    one = write_dataset(tmp_path / "one", groups, codecs=EXACT)
    shard = one / read_index(one).shards[0].name
    with tarfile.open(shard) as tar:
        sizes = [info.size for info in tar]
    assert shard.stat().st_size == sum(tar_member_bytes(n) for n in sizes) + 1024
    group_bytes = sum(tar_member_bytes(n) for n in sizes) // 5  # meta.json pads to the same 512-byte blocks here
    info = read_index(one).dataset
    method = MethodInfo(4, 2, 0, 10, list(groups[0].teachers))
    with ShardWriter(tmp_path / "fixed", dataset=info, method=method, codecs=EXACT) as w:  # infer distill's way: S groups a shard
        entries = [w.write_shard(i, 2 * i, groups[2 * i : 2 * i + 2]) for i in range(3)]
        for e in entries:
            w.add_shard(e)
    assert [e.bytes for e in entries] == shard_sizes(group_bytes, 5, 2) == [2 * group_bytes + 1024] * 2 + [group_bytes + 1024]


@pytest.mark.parametrize(("spec", "ipc", "shard_size", "shards"), [
    ("imagenet-1k", 10, None, 9), ("cifar10", 50, None, 3), ("cifar10", 50, 5, 7), ("embedded", 10, None, 1)])
def test_shard_count_follows_distill_layout(spec: str, ipc: int, shard_size: int | None, shards: int) -> None:
    p = make_plan(spec, ipc, 4, shard_size=shard_size)
    assert all(lay.shards == shards for lay in p.layouts)


def test_entropy_coded_fields_are_marked_estimates() -> None:
    p = make_plan("cifar10", 10, 4)
    flags = {(f, fb.codec): fb.estimate for f, items in p.fields.items() for fb in items}
    assert flags[("base", "npy:none")] is False and flags[("base", "png")] is True and flags[("base", "jpeg:90")] is True
    assert flags[("compensators", "fp16:none")] is False and flags[("compensators", "int8")] is True
    assert flags[("labels", "topk:10 zstd off")] is False and flags[("labels", "none")] is False
    assert p.reference_layout["estimate"] is True
    assert p.reference_layout["label_bytes"] == 350 * 10 * 4  # fp32 labels per instance are exact
    chosen = p.layouts[0]
    assert chosen.codecs == {"base": "png", "compensators": "fp16", "labels": "fp16"}
    assert {"base", "metadata", "total"} <= set(chosen.estimated)


def test_user_codecs_are_planned_and_chosen() -> None:
    p = make_plan("cifar100", 10, 4, codecs={"base": "jpeg:60", "labels": "topk:5"})
    assert [fb.codec for fb in p.fields["base"]][-1] == "jpeg:60"
    assert p.layouts[0].codecs == {"base": "jpeg:60", "compensators": "fp16", "labels": "topk:5"}
    assert make_plan("embedded", 10, 4).layouts[0].codecs["base"] == "npy"  # the embedded preset's codec
    webp = make_plan("imagenet-1k", 10, 4, codecs={"base": "webp:80"}).fields["base"][-1]
    assert webp.codec == "webp:80" and webp.estimate
    assert len(webp.members) == 14  # 1000 bases at 224 px cut into stacks of 73 below the 16,383-row limit, as written


def test_errors_name_the_argument() -> None:
    with pytest.raises(ConfigError, match=r"^--dataset 'imagenet-21k' is not a known source; use one of imagenet-1k, "):
        make_plan("imagenet-21k", 10, 4)
    with pytest.raises(ConfigError, match=r"^--ipc 1 is too small for one group"):
        make_plan("imagenet-1k", 1, 4)
    with pytest.raises(ConfigError, match=r"^--base-codec 'jpg': unknown codec 'base/jpg'"):
        make_plan("cifar10", 10, 4, codecs={"base": "jpg"})
    with pytest.raises(ConfigError, match=r"^--shard-size must be a number of groups >= 1 \(or 0 for the default\), got -1"):
        make_plan("cifar10", 10, 4, shard_size=-1)
    with pytest.raises(ConfigError, match=r"^--label-codec 'topk:x': "):
        make_plan("cifar10", 10, 4, codecs={"labels": "topk:x"})
    with pytest.raises(ConfigError, match=r"^--ipc 800 needs G=796 groups but imagenet-1k has only 732 training images"):
        make_plan("imagenet-1k", 800, 4)


def _folder(root: Path, counts: dict[str, int], size: tuple[int, int] = (12, 10)) -> Path:
    for name, n in counts.items():
        (root / "train" / name).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", size, (i, 0, 0)).save(root / "train" / name / f"{i:03d}.png")
        (root / "train" / name / "notes.txt").write_text("not an image")
    return root


def test_image_folder_is_counted_not_decoded(tmp_path: Path) -> None:
    root = _folder(tmp_path / "f", {"cat": 3, "dog": 4})
    (root / "train" / "dog" / "zzz.png").write_bytes(b"not a png: counted by name, never decoded")
    src = source_size(f"imagefolder:{root}")
    assert (src.images, src.classes, src.image_shape, src.min_per_class) == (8, 2, (3, 10, 12), 3)
    assert src.train_bytes == 8 * 3 * 10 * 12 and src.class_names == ("cat", "dog")
    assert source_size(f"imagefolder:{root}", image_size=224).image_shape == (3, 224, 224)
    p = make_plan(f"imagefolder:{root}", 3, 1)
    assert (p.g, p.instances) == (2, 8)
    with pytest.raises(ConfigError, match=r"^--ipc 7 needs G=4 groups but imagefolder:.* has only 3 training images in its smallest class"):
        make_plan(f"imagefolder:{root}", 7, 1)
    with pytest.raises(DatasetNotFoundError, match=r"^--dataset imagefolder:.*/missing: .*/missing/train is not a folder"):
        make_plan(f"imagefolder:{tmp_path / 'missing'}", 3, 1)
    (root / "train" / "cat" / "000.png").write_bytes(b"broken")
    with pytest.raises(FormatError, match=r"^.*/train/cat/000.png: cannot read the image header \(.*\); remove or replace the file$"):
        make_plan(f"imagefolder:{root}", 3, 1)


def test_known_sizes_agree_with_stats_and_the_embedded_file() -> None:
    names = {"cifar10": "cifar10", "cifar100": "cifar100", "tiny-imagenet": "tinyimagenet", "imagenet-1k": "imagenet1k",
             "fashion-mnist": "fashion-mnist"}
    for ours, theirs in names.items():
        assert (KNOWN_SOURCES[ours].images, KNOWN_SOURCES[ours].train_bytes) == KNOWN_DATASETS[theirs]
    from infer_distill.embedded import load_embedded

    images, labels, _, classes = load_embedded("train")
    e = KNOWN_SOURCES["embedded"]
    assert (e.images, e.classes, e.image_shape, e.train_bytes) == (len(images), len(classes), images.shape[1:], images.size)
    assert e.min_per_class == int(np.bincount(labels).min())


@pytest.mark.parametrize("ipc", [10, 50])
def test_imagenet_preset_defaults_are_smaller_than_the_reference_layout(ipc: int) -> None:
    p = make_plan("imagenet-1k", ipc, 4)
    chosen = p.layouts[0]
    assert chosen.codecs["base"].startswith("jpeg")
    assert chosen.bytes["total"] < p.reference_layout["total"]
    assert p.ratios["reference_over_chosen"] > 2
