"""Writer -> reader round trips, determinism, atomicity and the layout readers rely on."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from builders import make_groups, write_dataset

from infer_data import ConfigError, DatasetInfo, FormatError, InferDataset, MethodInfo, ShardWriter, iter_groups, read_index


def test_lossless_round_trip_is_bit_exact(tiny_dir: Path, tiny_groups: list) -> None:
    index = read_index(tiny_dir)
    assert (index.num_groups, index.num_instances, len(index.shards)) == (3, 3 * 4 * 3, 3)
    for got, want in zip(iter_groups(tiny_dir, index), tiny_groups, strict=True):
        np.testing.assert_array_equal(got.bases, want.bases)
        np.testing.assert_array_equal(got.class_ids, want.class_ids)
        np.testing.assert_array_equal(got.source_indices, want.source_indices)
        np.testing.assert_array_equal(got.compensators, want.compensators.astype(np.float16))
        np.testing.assert_array_equal(got.labels, want.labels.astype(np.float16))
        assert got.teachers == want.teachers


def test_same_input_gives_identical_bytes(tmp_path: Path) -> None:
    digests = []
    for name in ("a", "b"):
        root = write_dataset(tmp_path / name, make_groups(3, 4, 2, (3, 8, 8), seed=7), max_shard_bytes=4000)
        digests.append({p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.iterdir())})
    assert digests[0] == digests[1]
    assert len(digests[0]) == 1 + len(read_index(tmp_path / "a").shards)


def test_index_records_sha_bytes_and_counts(tiny_dir: Path) -> None:
    obj = json.loads((tiny_dir / "index.json").read_text())
    assert obj["format"] == "infer" and obj["version"] == 1
    for s in obj["shards"]:
        data = (tiny_dir / s["name"]).read_bytes()
        assert s["bytes"] == len(data) and s["sha256"] == hashlib.sha256(data).hexdigest()
        assert s["instances"] == s["groups"] * 4 * 3
    assert obj["totals"] == {"groups": 3, "instances": 36, "bytes": sum(s["bytes"] for s in obj["shards"])}


def test_tarfile_lists_sorted_adjacent_members(tiny_dir: Path) -> None:
    names = []
    for shard in sorted(tiny_dir.glob("shard-*.tar")):
        with tarfile.open(shard) as tar:
            infos = tar.getmembers()
        assert all(i.mtime == 0 and i.uid == 0 and i.gid == 0 and i.mode == 0o644 for i in infos)
        names += [i.name for i in infos]
    assert names[:4] == ["g000000.base.png", "g000000.comp.npy.zst", "g000000.label.npy.zst", "g000000.meta.json"]
    assert names == sorted(names) and len(names) == 12


def test_shards_roll_by_size(tmp_path: Path) -> None:
    groups = make_groups(5, 4, 2, (3, 8, 8))
    one = write_dataset(tmp_path / "one", groups)
    many = write_dataset(tmp_path / "many", groups, max_shard_bytes=6000)
    assert len(read_index(one).shards) == 1
    shards = read_index(many).shards
    assert len(shards) > 1 and sum(s.groups for s in shards) == 5
    assert [s.first_group for s in shards] == list(np.cumsum([0] + [s.groups for s in shards[:-1]]))


def test_interrupted_write_leaves_nothing_under_a_final_name(tmp_path: Path) -> None:
    groups = make_groups(4, 4, 2, (3, 8, 8))
    info = DatasetInfo("toy", [f"c{i}" for i in range(4)], (3, 8, 8), [0.5] * 3, [0.25] * 3)
    method = MethodInfo(4, 2, 0, 10, ["t0", "t1"])
    with pytest.raises(KeyboardInterrupt):
        with ShardWriter(tmp_path / "out", dataset=info, method=method, max_shard_bytes=3000) as w:
            for rec in groups[:3]:
                w.write_group(rec)
            raise KeyboardInterrupt
    assert list((tmp_path / "out").iterdir()) == []


def test_writer_rejects_bad_groups_and_existing_output(tiny_dir: Path, tmp_path: Path) -> None:
    info = DatasetInfo("toy", [f"c{i}" for i in range(4)], (3, 8, 8), [0.5] * 3, [0.25] * 3)
    with pytest.raises(ConfigError, match="already holds a distilled dataset"):
        ShardWriter(tiny_dir, dataset=info, method=MethodInfo(4, 2, 0, 10, ["t0", "t1"]))
    w = ShardWriter(tmp_path / "x", dataset=info, method=MethodInfo(4, 2, 0, 10, ["t0", "t1"]))
    bad = make_groups(1, 4, 2, (3, 8, 9))[0]
    with pytest.raises(FormatError, match=r"group 0: bases has shape \(4, 3, 8, 9\), expected \?x3x8x8"):
        w.write_group(bad)
    other_teachers = make_groups(1, 4, 2, (3, 8, 8))[0]
    other_teachers.teachers = ["a", "b"]
    with pytest.raises(FormatError, match=r"teachers \['a', 'b'\] differ"):
        w.write_group(other_teachers)
    with pytest.raises(ConfigError, match="no groups were written"):
        w.close()


@pytest.mark.parametrize("codecs", [
    {"base": "png", "compensators": "int8", "labels": {"name": "topk", "k": 3}},
    {"base": {"name": "jpeg", "quality": 90}, "labels": "none"},
    {"base": {"name": "npy", "zstd_level": None}, "compensators": {"name": "fp16", "zstd_level": None}},
])
def test_every_codec_combination_reads_back(dataset_factory, codecs: dict) -> None:
    groups = make_groups(2, 5, 3, (1, 9, 7))
    root = dataset_factory(groups, codecs=codecs, max_shard_bytes=1)
    target = "class" if codecs.get("labels") == "none" else "soft"
    ds = InferDataset(root, target=target)
    assert len(ds) == 2 * 5 * 4 and ds[0][0].shape == (1, 9, 7)
    if codecs["base"] == "png" or codecs["base"].get("name") == "npy":
        np.testing.assert_array_equal(ds.factors(decode_all=True).bases.numpy(), np.stack([g.bases for g in groups]))
    assert ds.index.codecs["base"]["name"] == (codecs["base"] if isinstance(codecs["base"], str) else codecs["base"]["name"])
    assert torch.isfinite(ds[len(ds) - 1][0]).all()
