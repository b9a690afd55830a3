"""`infer distill` under real torchrun (gloo, 2 CPU processes): the same bytes as 1 process, resume across world sizes.

torchrun runs with ``--standalone``, which hosts its rendezvous on a free port it picks itself,
so parallel test runs do not collide.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from infer_cli.main import main

from infer_distill.config import OptimConfig, TeacherSpec, create_preset
from infer_distill.pipeline import Progress, distill
from infer_distill.workdir import WORK_DIRNAME

pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                                reason="needs torch.distributed with gloo")

TORCHRUN = Path(sys.executable).with_name("torchrun")


def _args(teachers: dict[str, Path], out: Path) -> list[str]:
    """embedded, K=10, M=2, ipc 4 -> G=3 groups, one group per shard: rank 0 writes shards 0 and 2, rank 1 shard 1."""
    return ["--ipc", "4", "--teacher", f"convnet={teachers['a']}", "--teacher", f"convnet={teachers['b']}", "--iterations", "3",
            "--batch-groups", "1", "--shard-size", "1", "--seed", "2", "--device", "cpu", "--out", str(out)]


def _digests(root: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.iterdir()) if p.is_file()}


def _differing(a: dict[str, str], b: dict[str, str]) -> list[str]:
    """Names whose sha256 differ or that only one side has (empty when the folders are byte-identical)."""
    return sorted(n for n in set(a) | set(b) if a.get(n) != b.get(n))


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """One intra-op thread, as each torchrun rank has (OMP_NUM_THREADS=1)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _torchrun(args: list[str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    cmd = [str(TORCHRUN), "--standalone", "--nproc_per_node", "2", "--monitor-interval", "0.2", "-m", "infer_cli.distill", *args]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


@pytest.fixture(scope="module")
def single_process(tmp_path_factory: pytest.TempPathFactory, embedded_teachers: dict[str, Path]) -> dict[str, str]:
    """sha256 of every file of the 1-process run."""
    out = tmp_path_factory.mktemp("one") / "out"
    with _one_thread():
        result = CliRunner().invoke(main, ["distill", *_args(embedded_teachers, out), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "G=3 groups x (K=10 bases + M=2 compensators), 90 instances" in result.output and "in 3 shard(s)" in result.output
    digests = _digests(out)
    assert sorted(digests) == ["README.md", "index.json", "shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]  # README.md: the card
    return digests


def test_two_ranks_write_the_bytes_of_one_process(tmp_path: Path, embedded_teachers: dict[str, Path],
                                                  single_process: dict[str, str]) -> None:
    done = _torchrun(_args(embedded_teachers, tmp_path / "two"))
    assert _differing(_digests(tmp_path / "two"), single_process) == []
    assert not (tmp_path / "two" / WORK_DIRNAME).exists() and not list((tmp_path / "two").glob(".*"))
    assert done.stdout.count("wrote ") == 1  # the summary comes from rank 0 only
    assert "groups 2/2" in done.stderr and "groups 1/1" not in done.stderr  # rank 0's bar (shards 0, 2); rank 1 shows none


def test_one_process_run_resumes_on_two_ranks(tmp_path: Path, embedded_teachers: dict[str, Path],
                                              single_process: dict[str, str]) -> None:
    out = tmp_path / "resumed"
    teachers = (TeacherSpec("convnet", str(embedded_teachers["a"])), TeacherSpec("convnet", str(embedded_teachers["b"])))
    cfg = dataclasses.replace(create_preset("embedded", ipc=4, teachers=teachers, seed=2, batch_groups=1, shard_size=1),
                              optim=OptimConfig(iterations=3))

    class Killed(Exception):
        pass

    def kill_during_second_shard(p: Progress) -> None:
        if p.groups_done == 2:  # shard 0 is written, group 1 is cached, shard 1 is not written yet
            raise Killed

    with _one_thread(), pytest.raises(Killed):
        distill(cfg, out, device="cpu", progress=kill_during_second_shard)
    assert not list(out.glob("*.tar")) and not (out / "index.json").exists()  # nothing under a final name
    work = out / WORK_DIRNAME
    assert sorted(p.name for p in work.glob("shard-*")) == ["shard-000000.json", "shard-000000.tar"]
    assert sorted(p.name for p in work.glob("group-*")) == ["group-000000.npz", "group-000001.npz"]
    kept = (work / "shard-000000.tar").stat().st_ino
    _torchrun([*_args(embedded_teachers, out), "--no-progress"])
    assert _differing(_digests(out), single_process) == [] and not list(out.glob(".*"))
    assert (out / "shard-000000.tar").stat().st_ino == kept  # the finished shard was verified and kept, not rewritten
