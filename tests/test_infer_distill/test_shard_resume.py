"""Resume keeps only shards whose file matches its record; a damaged one is written again."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from infer_distill.config import OptimConfig, TeacherSpec, create_preset
from infer_distill.pipeline import Progress, distill
from infer_distill.workdir import WORK_DIRNAME


def test_damaged_finished_shard_is_rewritten_on_resume(tmp_path: Path, embedded_teachers: dict[str, Path]) -> None:
    teachers = (TeacherSpec("convnet", str(embedded_teachers["a"])), TeacherSpec("convnet", str(embedded_teachers["b"])))
    cfg = dataclasses.replace(create_preset("embedded", ipc=3, teachers=teachers, batch_groups=1, shard_size=1, seed=4),
                              optim=OptimConfig(iterations=2))  # G = 2 groups, one per shard
    full = distill(cfg, tmp_path / "full")
    assert [s.name for s in full.shards] == ["shard-000000.tar", "shard-000001.tar"]

    class Killed(Exception):
        pass

    def kill(p: Progress) -> None:
        if p.groups_done == 2:  # shard 0 written and recorded, shard 1 not yet
            raise Killed

    out = tmp_path / "out"
    with pytest.raises(Killed):
        distill(cfg, out, progress=kill)
    record = json.loads((out / WORK_DIRNAME / "shard-000000.json").read_text())
    assert record == {**dataclasses.asdict(full.shards[0])}
    with open(out / WORK_DIRNAME / "shard-000000.tar", "r+b") as f:  # same size, one byte changed: only sha256 can tell
        f.seek(700)
        byte = f.read(1)
        f.seek(700)
        f.write(bytes([byte[0] ^ 1]))
    distill(cfg, out)
    for name in ("index.json", "shard-000000.tar", "shard-000001.tar"):
        assert (out / name).read_bytes() == (tmp_path / "full" / name).read_bytes(), name
