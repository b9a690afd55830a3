"""Shard layout independent of the number of processes; shards written one by one equal streamed shards."""

from __future__ import annotations

from pathlib import Path

import pytest
from builders import make_groups

from infer_data import DatasetInfo, MethodInfo, ShardWriter, read_index
from infer_data.errors import ConfigError
from infer_distill.distributed import env_ranks
from infer_distill.layout import Layout, default_shard_size, raw_group_bytes


def test_layout_is_the_same_for_every_world_size() -> None:
    layout = Layout(groups=7, shard_size=3, batch_groups=2)
    assert layout.num_shards == 3
    assert [list(layout.shard_groups(s)) for s in range(3)] == [[0, 1, 2], [3, 4, 5], [6]]
    assert [layout.chunks(s) for s in range(3)] == [[[0, 1], [2]], [[3, 4], [5]], [[6]]]  # no chunk crosses a shard
    for world in (1, 2, 3, 5):
        mine = [layout.shards_of(r, world) for r in range(world)]
        assert sorted(s for part in mine for s in part) == [0, 1, 2]
    assert layout.shards_of(0, 2) == [0, 2] and layout.shards_of(1, 2) == [1] and layout.shards_of(4, 5) == []


def test_default_shard_size_is_one_chunk_capped_at_256_mib() -> None:
    assert raw_group_bytes(10, 4, (3, 32, 32), 10) == 10 * 3072 + 2 * 4 * 3072 + 2 * 50 * 10
    assert default_shard_size(16, 10, 4, (3, 32, 32), 10) == 16  # CIFAR-10: one batch of groups
    assert default_shard_size(16, 1000, 4, (3, 224, 224), 1000) == 1  # ImageNet: ~162 MB raw per group
    assert default_shard_size(16, 100, 4, (3, 224, 224), 100) == 16  # 16 x 15.3 MB fits in 256 MiB


def _writer(root: Path, **kw: object) -> ShardWriter:
    info = DatasetInfo("toy", ["a", "b", "c"], (3, 6, 6), [0.5] * 3, [0.25] * 3, source="synthetic")
    return ShardWriter(root, dataset=info, method=MethodInfo(3, 2, 0, 4, ["t0", "t1"]), **kw)  # type: ignore[arg-type]


def test_shards_written_one_by_one_equal_streamed_shards(tmp_path: Path) -> None:
    groups = make_groups(5, 3, 2, (3, 6, 6))
    with _writer(tmp_path / "stream", groups_per_shard=2) as w:
        for rec in groups:
            w.write_group(rec)
    w2 = _writer(tmp_path / "cut")
    (tmp_path / "cut" / "work").mkdir()
    folders = {0: tmp_path / "cut" / "work", 1: None, 2: tmp_path / "cut" / "work"}  # None: the final name at once
    entries = [w2.write_shard(s, 2 * s, groups[2 * s:2 * s + 2], folder=folders[s]) for s in (2, 0, 1)]  # any order, any process
    assert sorted(p.name for p in (tmp_path / "cut").glob("*.tar")) == ["shard-000001.tar"]
    for e in sorted(entries, key=lambda e: e.first_group):
        w2.add_shard(e, None if folders[e.first_group // 2] is None else tmp_path / "cut" / "work" / e.name)
    assert not (tmp_path / "cut" / "index.json").exists() and len(list((tmp_path / "cut" / "work").iterdir())) == 2
    w2.close()
    (tmp_path / "cut" / "work").rmdir()  # close moved the shards to their final names
    files = sorted(p.name for p in (tmp_path / "stream").iterdir())
    assert files == ["index.json", "shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    assert files == sorted(p.name for p in (tmp_path / "cut").iterdir())
    for name in files:
        assert (tmp_path / "stream" / name).read_bytes() == (tmp_path / "cut" / name).read_bytes(), name
    assert [s.groups for s in read_index(tmp_path / "cut").shards] == [2, 2, 1]


def test_write_shard_and_add_shard_errors(tmp_path: Path) -> None:
    groups = make_groups(3, 3, 2, (3, 6, 6))
    w = _writer(tmp_path)
    with pytest.raises(ConfigError, match=r"shard-000000.tar: no groups given for the shard; pass at least one record"):
        w.write_shard(0, 0, [])
    assert not list(tmp_path.glob("*.tar")) and not list(tmp_path.glob(".*.tmp"))
    entry = w.write_shard(1, 1, groups[1:])
    with pytest.raises(ConfigError, match=r"shard-000001.tar: shard added out of order \(first group 1, 2 groups\); "
                                          r"expected shard-000000.tar starting at group 0"):
        w.add_shard(entry)
    (tmp_path / "shard-000001.tar").write_bytes(b"truncated")
    w.add_shard(w.write_shard(0, 0, groups[:1]))
    with pytest.raises(ConfigError, match=rf"shard-000001.tar: expected a finished shard of {entry.bytes} bytes, found 9 bytes; write it again"):
        w.add_shard(entry)
    with pytest.raises(ConfigError, match="groups_per_shard must be a positive number of groups or None, got 0"):
        _writer(tmp_path / "x", groups_per_shard=0)


def test_malformed_torchrun_environment_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ConfigError, match=r"environment variable WORLD_SIZE='two' is not an integer >= 1; launch with torchrun"):
        env_ranks()
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ConfigError, match="environment variable RANK=2 is not below WORLD_SIZE=2"):
        env_ranks()
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert env_ranks().rank == 1 and not env_ranks().is_main
