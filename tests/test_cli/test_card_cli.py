"""`infer card`: the README.md dataset card, generated from the index and the shards' headers."""

from __future__ import annotations

import json
from pathlib import Path

from builders import make_groups, write_dataset
from click.testing import CliRunner

from infer_cli.main import main
from infer_data.card import NO_LICENSE, card_text
from infer_data.stats import stored_bytes


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_card_states_counts_codecs_and_exact_bytes(tiny_dir: Path) -> None:
    code, out = run("card", str(tiny_dir))
    assert code == 0 and out.strip() == f"wrote {tiny_dir / 'README.md'}"
    text = (tiny_dir / "README.md").read_text()
    st = stored_bytes(tiny_dir)
    assert text.startswith("# toy-ipc10\n")  # default name: dataset name and ipc
    for row in ("| K (images per group) | 4 |", "| M (compensators per group) | 2 |", "| G (groups) | 3 |", "| ipc | 10 |",
                "| training instances | 36 |", "| stored images | 18 |", f"| license | {NO_LICENSE} |",
                f"| total | {st.total:,} |", f"| base | {st.base:,} |", f"| labels | {st.labels:,} |",
                '| base | {"compress_level": 6, "name": "png"} |'):
        assert row in text, row
    assert "no ratio" in text  # "toy" is no known dataset and records no source size
    assert "InferDataset(" in text and "wds.WebDataset(" in text and 'load_dataset("webdataset"' in text


def test_card_is_deterministic_and_stdout_matches(tiny_dir: Path) -> None:
    run("card", str(tiny_dir))
    first = (tiny_dir / "README.md").read_bytes()
    run("card", str(tiny_dir))
    assert (tiny_dir / "README.md").read_bytes() == first
    code, out = run("card", str(tiny_dir), "--stdout")
    assert code == 0 and out.encode() == first


def test_card_name_license_ratios_and_teacher_checksums(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "c10", make_groups(2, 10, 1, (3, 32, 32)), name="cifar10", ipc=2)
    index = json.loads((root / "index.json").read_text())
    index["provenance"] = {"card": {"name": "my-c10", "license": "CC-BY-4.0"},
                           "teachers": [{"arch": "t0", "sha256": "ab" * 32, "role": "compensator+label"}]}
    (root / "index.json").write_text(json.dumps(index))
    text = card_text(root)
    total = stored_bytes(root).total
    assert text.startswith("# my-c10\n") and "| license | CC-BY-4.0 |" in text
    assert f"| t0 | compensator+label sha256 {'ab' * 32} |" in text
    assert f"| stored bytes / original bytes | {100 * total / 153_600_000:.4f}% |" in text
    assert "| stored images / original images | 0.0440% |" in text  # 2 groups x (10 + 1) / 50,000
    # paper: 2 ipc x 10 / 50,000 images + 20 x 10 classes x 4 bytes / 153,600,000 bytes
    assert f"| paper convention | {100 * (20 / 50_000 + 800 / 153_600_000):.4f}% (0.0400% images + 0.0005% labels) |" in text


def test_card_of_a_missing_dataset_is_one_line_exit_1(tmp_path: Path) -> None:
    code, out = run("card", str(tmp_path))
    assert code == 1 and out.count("\n") == 1 and "missing index.json" in out


def test_a_publishers_own_readme_is_kept_unless_forced(tiny_dir: Path) -> None:
    own = tiny_dir / "README.md"
    own.write_text("# my notes\n")
    code, out = run("card", str(tiny_dir))
    assert code == 1 and out.strip() == (f"Error: {tiny_dir}/README.md: exists and was not written by infer; move it away, "
                                         "print the card with --stdout, or replace it with --force")
    assert own.read_text() == "# my notes\n"
    code, _ = run("card", str(tiny_dir), "--force")
    assert code == 0 and own.read_text() == card_text(tiny_dir)
    own.write_text(own.read_text().replace("| ipc | 10 |", "| ipc | 11 |"))  # an edited generated card is still ours
    code, _ = run("card", str(tiny_dir))
    assert code == 0 and own.read_text() == card_text(tiny_dir)
