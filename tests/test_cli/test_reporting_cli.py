"""Reporting conventions of every command: --json, --quiet, progress in logs, `python -m infer_cli`, docs/cli.md."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from infer_cli.helpdoc import command_paths, documented_blocks, help_text
from infer_cli.main import main
from infer_cli.progress import LineProgress, progress_bar

DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
REGENERATE = "run `.venv/bin/python scripts/gen_cli_docs.py` to regenerate it"


def test_python_m_infer_cli_is_the_infer_command() -> None:
    done = subprocess.run([sys.executable, "-m", "infer_cli", "--version"], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and done.stdout.startswith("infer, version "), done.stderr
    done = subprocess.run([sys.executable, "-m", "infer_cli", "teacher", "--help"], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and done.stdout.startswith("Usage: infer teacher [OPTIONS] COMMAND [ARGS]..."), done.stderr


@pytest.mark.parametrize("path", command_paths(), ids=lambda p: " ".join(("infer", *p)))
def test_docs_cli_md_holds_every_commands_help(path: tuple[str, ...]) -> None:
    name = " ".join(("infer", *path))
    documented = documented_blocks(DOC.read_text(encoding="utf-8"))
    assert name in documented, f"docs/cli.md has no `{name} --help` block; {REGENERATE}"
    assert documented[name] == help_text(path), f"docs/cli.md differs from `{name} --help`; {REGENERATE}"


def test_docs_cli_md_documents_no_removed_command() -> None:
    names = {" ".join(("infer", *p)) for p in command_paths()}
    stale = sorted(set(documented_blocks(DOC.read_text(encoding="utf-8"))) - names)
    assert not stale, f"docs/cli.md documents commands that no longer exist: {stale}; {REGENERATE}"


def test_progress_in_a_log_is_a_line_per_tenth() -> None:
    log = io.StringIO()
    bar = progress_bar(4, desc="export", unit="img", file=log)
    assert isinstance(bar, LineProgress)
    bar.set_postfix_str("groups 1/2")
    for _ in range(4):
        bar.update()
    assert log.getvalue() == ("export: 25% (1/4 img) groups 1/2\nexport: 50% (2/4 img) groups 1/2\n"
                              "export: 75% (3/4 img) groups 1/2\nexport: 100% (4/4 img) groups 1/2\n")
    log = io.StringIO()
    bar = progress_bar(1000, desc="d", unit="step", initial=250, file=log)
    for _ in range(750):
        bar.update()
    assert log.getvalue().splitlines() == [f"d: {p}% ({p * 10}/1000 step)" for p in range(30, 101, 10)]
    quiet = progress_bar(10, desc="d", unit="step", quiet=True, file=log)
    quiet.update(10)
    assert quiet.n == 10 and log.getvalue().count("\n") == 8


def test_export_json_and_progress_lines(tiny_dir: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["export", str(tiny_dir), "--out", str(tmp_path / "x"), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["files"] == 36 and report["layout"] == "imagefolder" and report["format"] == "png"
    assert report["image_bytes"] == sum(p.stat().st_size for p in (tmp_path / "x").rglob("*.png"))
    assert report["label_bytes"] == (tmp_path / "x" / "labels.npy").stat().st_size
    lines = result.stderr.splitlines()
    assert "\r" not in result.stderr and lines[-1] == "export: 100% (36/36 img)" and 1 <= len(lines) <= 10
    assert all(re.fullmatch(r"export: \d+% \(\d+/36 img\)", line) for line in lines), lines
    result = CliRunner().invoke(main, ["export", str(tiny_dir), "--out", str(tmp_path / "y"), "--quiet"])
    assert result.exit_code == 0 and result.stderr == "" and result.stdout.startswith("wrote 36 images")


def test_verify_json(tiny_dir: Path) -> None:
    result = CliRunner().invoke(main, ["verify", str(tiny_dir), "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout) == {"ok": True, "shards": 3, "groups": 3, "problems": []}
    shard = tiny_dir / "shard-000001.tar"
    data = bytearray(shard.read_bytes())
    data[600] ^= 0xFF
    shard.write_bytes(bytes(data))
    result = CliRunner().invoke(main, ["verify", str(tiny_dir), "--json"])
    report = json.loads(result.stdout)
    assert result.exit_code == 1 and report["ok"] is False and report["shards"] == 3
    assert len(report["problems"]) == 1 and report["problems"][0].startswith(f"{shard}: sha256 ")
