"""verify_dataset: one streamed read per shard, in parallel, problems in index order."""

from __future__ import annotations

from pathlib import Path

from builders import make_groups, write_dataset

from infer_data import read_index
from infer_data.verify import verify_dataset


def _corrupt(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_parallel_verify_reports_every_bad_shard_in_index_order(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "ds", make_groups(5, 3, 1, (3, 8, 8)), max_shard_bytes=2000)
    shards = [root / s.name for s in read_index(root).shards]
    assert len(shards) == 5
    ok = verify_dataset(root, jobs=3)
    assert ok.ok and (ok.shards, ok.groups) == (5, 5)
    _corrupt(shards[3], 600)
    _corrupt(shards[1], 1)  # a header byte: parsing fails, the checksum names the real cause
    seen: list[str] = []
    report = verify_dataset(root, jobs=2, on_shard=seen.append)
    assert sorted(seen) == [s.name for s in shards]
    assert (report.shards, report.groups) == (5, 3)
    assert len(report.problems) == 2
    assert "shard-000001.tar: sha256" in report.problems[0] and "shard-000003.tar: sha256" in report.problems[1]
    assert all("does not match index.json" in p and "re-download it" in p for p in report.problems)


def test_a_missing_shard_and_a_short_shard_are_named(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "ds", make_groups(2, 3, 1, (3, 8, 8)), max_shard_bytes=2000)
    first, second = (root / s.name for s in read_index(root).shards)
    first.unlink()
    second.write_bytes(second.read_bytes()[:-512])
    report = verify_dataset(root, jobs=1)
    assert report.problems[0].endswith("shard-000000.tar: shard listed in index.json is missing; re-download it or rewrite the dataset")
    assert "shard-000001.tar: " in report.problems[1] and "bytes but index.json declares" in report.problems[1]
