"""infer_data never imports the producer or the CLI."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_infer_data_imports_neither_producer_nor_cli() -> None:
    offenders = []
    for path in (ROOT / "infer_data").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in {"infer_distill", "infer_cli", "cli"}]
    assert offenders == []
