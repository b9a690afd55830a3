"""`infer demo` on tiny settings: teachers reused from the folder, both datasets, the table."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner
from infer_cli.main import main

from infer_data import read_index
from infer_distill.demo import DemoConfig, run_demo


def test_demo_tiny_then_cli_reuses_the_outputs(tmp_path: Path, embedded_teachers: dict[str, Path],
                                               teacher_checkpoint: Callable[..., Path]) -> None:
    out = tmp_path / "demo"
    (out / "teachers").mkdir(parents=True)
    shutil.copy(embedded_teachers["a"], out / "teachers" / "convnet.pt")
    teacher_checkpoint(out / "teachers" / "resnet20.pt", "resnet20", seed=3)
    cfg = DemoConfig(iterations=3, student_epochs=1)
    said: list[str] = []
    report = run_demo(out, cfg, say=said.append)
    assert any("reusing" in s for s in said)
    infer, real, real_steps = report.rows
    assert (infer.name, infer.stored_images, infer.instances) == ("INFER", 96, 240)  # K=10, M=2, ipc 10 -> G=8
    assert (real.name, real.stored_images, real.instances) == ("random real", 100, 100)
    assert (infer.epochs, real.epochs, real_steps.epochs) == (1, 1, 2)  # 4 steps per epoch on 240 instances, 2 on 100
    assert real_steps.steps == infer.steps == 4 and real.steps == 2
    assert read_index(out / "infer").method.m == 2 and read_index(out / "random-real").method.m == 0
    for row in report.rows:
        assert 0.0 <= row.top1 <= 100.0
        assert row.bytes_ratio == row.stored_bytes / 3_920_000
        assert row.reference_bytes > 0 and row.images_ratio == row.stored_images / 5000
    code_out = CliRunner().invoke(main, ["demo", "--out", str(out), "--student-epochs", "1", "--json"])
    assert code_out.exit_code == 0, code_out.output
    again = json.loads(code_out.output)
    assert [r["stored_bytes"] for r in again["rows"]] == [r.stored_bytes for r in report.rows]  # reused, not redone
    table = CliRunner().invoke(main, ["demo", "--out", str(out), "--student-epochs", "1", "--quiet"])
    assert table.exit_code == 0 and "INFER" in table.output and "random real" in table.output and "student top-1" in table.output
    assert "INFER's 2.4x instances also buy 2x the optimizer steps" in table.output  # 240 vs 100 instances, 4 vs 2 steps per epoch
    assert table.stderr == ""  # --quiet: no step messages (run_demo's say, checked above)


def test_demo_cli_rejects_a_file_as_folder(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    result = CliRunner().invoke(main, ["demo", "--out", str(f)])
    assert result.exit_code == 2 and "is a file" in result.output
