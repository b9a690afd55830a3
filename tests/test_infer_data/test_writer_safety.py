"""ShardWriter's folder safety: one writer per folder, files of the user's never replaced, what a kill in
close() leaves and how the next writer clears it, in-place rewrites that readers never see half done."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from builders import make_groups, write_dataset

from infer_data import ConfigError, InferDataset
from infer_data.errors import InferError

GROUPS = make_groups(3, 4, 2, (3, 8, 8))
OTHER = make_groups(3, 4, 2, (3, 8, 8), seed=7)


def _files(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(root.iterdir())}


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, bytes]]:
    """The files of GROUPS and OTHER written into new folders (one group per shard)."""
    base = tmp_path_factory.mktemp("fresh")
    return {name: _files(write_dataset(base / name, groups, max_shard_bytes=2000)) for name, groups in
            (("groups", GROUPS), ("other", OTHER))}


def test_second_writer_on_a_folder_refuses(tmp_path: Path) -> None:
    from infer_data import ShardWriter
    from infer_data.index import DatasetInfo, MethodInfo

    info, method = DatasetInfo("toy", ["a", "b", "c", "d"], (3, 8, 8), [0.5] * 3, [0.25] * 3), MethodInfo(4, 2, 0, 10, ["t0", "t1"])
    first = ShardWriter(tmp_path, dataset=info, method=method)
    with pytest.raises(ConfigError, match=rf"^{tmp_path}: another infer process is writing to this folder \(it holds .infer-lock\); "
                                          "wait for it to finish or choose another folder$"):
        ShardWriter(tmp_path, dataset=info, method=method)
    first.abort()  # releases the lock: the folder can be written again
    ShardWriter(tmp_path, dataset=info, method=method).abort()
    assert list(tmp_path.iterdir()) == []


def test_user_files_are_never_replaced_or_deleted(tmp_path: Path, fresh: dict[str, dict[str, bytes]]) -> None:
    root = tmp_path / "ds"
    root.mkdir()
    (root / "shard-000001.tar").write_bytes(b"mine")
    (root / ".shard-000000.tar.tmp").write_bytes(b"also mine")  # the old temporary naming: no longer ours
    with pytest.raises(ConfigError, match=rf"^{root}/shard-000001.tar: a file this writer did not create \(not listed in index.json\) "
                                          "has the name of a new shard; move it away or write to another folder$"):
        write_dataset(root, GROUPS, max_shard_bytes=2000)
    assert _files(root) == {".shard-000000.tar.tmp": b"also mine", "shard-000001.tar": b"mine"}  # and no temporary left
    (root / "shard-000001.tar").unlink()
    write_dataset(root, GROUPS, max_shard_bytes=2000)
    assert _files(root) == {**fresh["groups"], ".shard-000000.tar.tmp": b"also mine"}


KILL = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, sys.argv[3])
    from builders import make_groups, write_dataset
    from infer_data import ShardWriter
    real_replace, real_unlink = os.replace, os.unlink
    point = sys.argv[2]
    def replace(src, dst, *a, **k):
        if point == "index" and str(dst).endswith("index.json"):
            os._exit(9)  # killed after the shards were renamed, before the index replaces the old one
        return real_replace(src, dst, *a, **k)
    def unlink(path, *a, **k):
        if point == "old" and os.path.basename(str(path)).startswith("shard-0"):
            os._exit(9)  # killed after the new index replaced the old one, before the old shards went
        return real_unlink(path, *a, **k)
    os.replace, os.unlink = replace, unlink
    groups = make_groups(3, 4, 2, (3, 8, 8), seed=int(sys.argv[4]))
    root = __import__("pathlib").Path(sys.argv[1])
    from infer_data import DatasetInfo, MethodInfo
    info = DatasetInfo("toy", [f"class{i}" for i in range(4)], (3, 8, 8), [0.5] * 3, [0.25] * 3, source="synthetic")
    with ShardWriter(root, dataset=info, method=MethodInfo(4, 2, 0, 10, ["t0", "t1"], seed=0, producer="tests"),
                     max_shard_bytes=2000, overwrite=True) as w:
        for rec in groups:
            w.write_group(rec)
""")


def _killed_write(root: Path, point: str, seed: int) -> None:
    tests = str(Path(__file__).resolve().parents[1])
    proc = subprocess.run([sys.executable, "-c", KILL, str(root), point, tests, str(seed)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 9, proc.stderr


def test_kill_after_the_shard_renames_leaves_no_index_and_the_next_writer_clears_it(tmp_path: Path,
                                                                                     fresh: dict[str, dict[str, bytes]]) -> None:
    root = tmp_path / "ds"
    _killed_write(root, "index", 0)
    left = sorted(p.name for p in root.iterdir())
    assert left[0] == ".infer-lock" and left[3:] == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    assert sorted(n.rsplit("-", 1)[1] for n in left[1:3]) == ["index.json", "publish.json"]  # journal + the index's temporary
    assert all(n.startswith(".infer-tmp-") for n in left[1:3])
    with pytest.raises(InferError, match="missing index.json"):
        InferDataset(root)
    write_dataset(root, GROUPS, max_shard_bytes=2000)  # the journal proves the shards ours: removed, then written again
    assert _files(root) == fresh["groups"]


def test_in_place_rewrite_keeps_the_old_index_until_the_new_one_replaces_it(tmp_path: Path,
                                                                            fresh: dict[str, dict[str, bytes]]) -> None:
    root = write_dataset(tmp_path / "ds", GROUPS, max_shard_bytes=2000)
    old_reader = InferDataset(root, verify=False)  # sha256 off: only the file names keep versions apart
    before = old_reader[list(range(36))][0]
    _killed_write(root, "index", 7)  # a rewrite with OTHER killed before its index: the old dataset is whole
    assert (root / "index.json").read_bytes() == fresh["groups"]["index.json"]
    assert torch.equal(InferDataset(root, verify=False)[list(range(36))][0], before)
    _killed_write(root, "old", 7)  # the rewrite again, killed after the new index, before the old shards went
    new = sorted(p.name for p in root.glob("shard-b-*.tar"))
    assert new == ["shard-b-000000.tar", "shard-b-000001.tar", "shard-b-000002.tar"]
    for n in range(3):  # the new shards are OTHER's, under names the old index never listed
        assert (root / new[n]).read_bytes() == fresh["other"][f"shard-{n:06d}.tar"]
    assert torch.equal(old_reader[list(range(36))][0], before)  # the old reader still sees only the old version
    assert not torch.equal(InferDataset(root, verify=False)[list(range(36))][0], before)
    write_dataset(root, GROUPS, max_shard_bytes=2000, overwrite=True)  # the journal: old shards go; prefix "shard" is free again
    assert _files(root) == fresh["groups"]
