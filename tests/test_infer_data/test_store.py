"""The lazy group store: open reads the index only, groups decode once into a shared, mapped cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from builders import make_groups, write_dataset
from torch.utils.data import DataLoader

from infer_data import InferDataset, IntegrityError, iter_groups, read_index
from infer_data.store import cache_key


def _ready(ds: InferDataset) -> list[str]:
    return sorted(p.name for p in (ds.store.path / "ready").iterdir())


def _flip_byte_in_last_group(root: Path) -> None:
    """Corrupt a byte inside the last shard's data, keeping its size."""
    index = read_index(root)
    path = root / index.shards[-1].name
    data = bytearray(path.read_bytes())
    data[700] ^= 0x01
    path.write_bytes(bytes(data))


def test_open_reads_only_the_index_and_shard_sizes(tiny_dir: Path) -> None:
    _flip_byte_in_last_group(tiny_dir)  # same size: only a sha256 check or a decode would notice
    ds = InferDataset(tiny_dir)
    assert len(ds) == 36 and _ready(ds) == []
    ds[0]  # group 0 lives in another shard
    assert _ready(ds) == ["g000000"]
    with pytest.raises(IntegrityError, match=r"shard-000002\.tar: sha256 .* does not match index\.json"):
        ds[35]


def test_groups_decode_once_and_equal_the_stored_groups(tiny_dir: Path, tiny_groups: list) -> None:
    ds = InferDataset(tiny_dir)
    f = ds.factors(decode_all=True)
    assert _ready(ds) == ["g000000", "g000001", "g000002"]
    for g, rec in enumerate(iter_groups(tiny_dir, read_index(tiny_dir))):
        np.testing.assert_array_equal(f.bases[g].numpy(), rec.bases)
        np.testing.assert_array_equal(f.compensators[g].numpy(), rec.compensators.astype(np.float32))
        np.testing.assert_array_equal(f.labels[g].numpy(), rec.labels)
        np.testing.assert_array_equal(f.class_ids[g].numpy(), tiny_groups[g].class_ids)
        np.testing.assert_array_equal(f.source_indices[g].numpy(), tiny_groups[g].source_indices)
    info = json.loads((ds.store.path / "info.json").read_text())
    assert info["groups"] == 3 and info["bytes"] == ds.store.nbytes == 3 * (4 * 192 + 2 * 192 * 4 + 12 * 4 * 2 + 2 * 4 * 8)
    assert (ds.store.path / "bases.u8").stat().st_size == 3 * 4 * 192


def test_a_second_process_reuses_verified_groups_without_reading_shards(tiny_dir: Path) -> None:
    first = InferDataset(tiny_dir)
    want = first.get_batch(torch.arange(36))
    _flip_byte_in_last_group(tiny_dir)  # the cache holds what was verified; the shard is not read again
    again = InferDataset(tiny_dir)
    got = again.get_batch(torch.arange(36))
    assert again.store.path == first.store.path
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


def test_groups_decoded_without_verification_are_rechecked_when_verifying(tiny_dir: Path) -> None:
    unchecked = InferDataset(tiny_dir, verify=False)
    unchecked.ensure_groups(range(3))
    assert (unchecked.store.path / "ready" / "g000002").read_text() == "size-checked"
    _flip_byte_in_last_group(tiny_dir)
    with pytest.raises(IntegrityError, match="does not match index.json"):
        InferDataset(tiny_dir).ensure_groups([2])


def test_a_group_without_its_marker_is_decoded_again(tiny_dir: Path) -> None:
    ds = InferDataset(tiny_dir)
    want = ds.group(1).bases.clone()
    with open(ds.store.path / "bases.u8", "r+b") as fh:  # a writer killed mid-group: data torn, no marker
        fh.seek(1 * 4 * 192)
        fh.write(b"\xff" * 100)
    (ds.store.path / "ready" / "g000001").unlink()
    fresh = InferDataset(tiny_dir)
    assert torch.equal(fresh.group(1).bases, want)


def test_targets_read_meta_only(tiny_dir: Path) -> None:
    ds = InferDataset(tiny_dir, target="class")
    assert ds.targets == [i % 4 for i in range(36)]
    assert _ready(ds) == []


def test_cache_key_follows_the_index(tmp_path: Path) -> None:
    a = write_dataset(tmp_path / "a", make_groups(2, 3, 1, (1, 4, 4), seed=1))
    b = write_dataset(tmp_path / "b", make_groups(2, 3, 1, (1, 4, 4), seed=2))
    c = write_dataset(tmp_path / "c", make_groups(2, 3, 1, (1, 4, 4), seed=1))
    keys = [cache_key((r / "index.json").read_bytes()) for r in (a, b, c)]
    assert keys[0] != keys[1] and keys[0] == keys[2]
    assert InferDataset(a).store.path.name == keys[0]


@pytest.mark.parametrize("start", ["spawn", "forkserver"])
def test_workers_of_any_start_method_share_the_decoded_cache(tiny_dir: Path, start: str) -> None:
    ds = InferDataset(tiny_dir, target="class")
    loader = DataLoader(ds, batch_size=6, num_workers=2, multiprocessing_context=start, shuffle=True,
                        generator=torch.Generator().manual_seed(0))
    seen = torch.cat([x.flatten(1) for x, _ in loader])
    ref = torch.stack([ds[i][0].flatten() for i in range(36)])
    assert sorted(map(tuple, seen.tolist())) == sorted(map(tuple, ref.tolist()))
    assert _ready(ds) == ["g000000", "g000001", "g000002"]  # decoded into the one shared cache
