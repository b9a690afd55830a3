"""`infer cache ls|clear` over a real cache root: URL mirrors (served on loopback), decoded caches, stray files."""

from __future__ import annotations

import functools
import http.server
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from infer_cli.main import main
from infer_data.remote import cache_key, fetch_dataset


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def served(tiny_dir: Path) -> Iterator[str]:
    handler = functools.partial(QuietHandler, directory=str(tiny_dir.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/{tiny_dir.name}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def cache_root(served: str) -> Path:
    """$INFER_CACHE holding one URL mirror, one decoded cache made from it, and things of no one's."""
    root = Path(os.environ["INFER_CACHE"])
    mirror = fetch_dataset(served, progress=False)
    decoded = root / "decoded" / "00aa00aa00aa00aa"
    decoded.mkdir(parents=True)
    (decoded / "info.json").write_text(json.dumps({"source": str(mirror.resolve()), "bytes": 1000}))
    (decoded / "bases.u8").write_bytes(b"\0" * 1000)
    (root / "notes.txt").write_text("mine")
    (root / "not-a-key").mkdir()
    return root


def test_ls_lists_mirrors_and_decoded_caches_with_exact_bytes(cache_root: Path, served: str, tiny_dir: Path) -> None:
    code, out = run("cache", "ls", "--json")
    assert code == 0
    entries = json.loads(out)
    assert [(e["kind"], e["key"]) for e in entries] == [("shards", cache_key(served)), ("decoded", "00aa00aa00aa00aa")]
    mirror = cache_root / cache_key(served)
    published = sum(p.stat().st_size for p in tiny_dir.iterdir())
    assert entries[0]["source"] == served and entries[0]["path"] == str(mirror)
    assert entries[0]["bytes"] == published + (mirror / "source.json").stat().st_size
    assert entries[1]["source"] == str(mirror.resolve()) and entries[1]["bytes"] == 1000 + len((cache_root / "decoded" / "00aa00aa00aa00aa" / "info.json").read_bytes())
    code, out = run("cache", "ls")
    assert code == 0
    assert f"shards   {cache_key(served)}" in out and f"{served} -> {mirror}" in out
    assert "decoded  00aa00aa00aa00aa" in out and "2 cached dataset(s)" in out


def test_clear_by_url_takes_its_decoded_cache_along(cache_root: Path, served: str) -> None:
    code, out = run("cache", "clear", served + "/")
    assert code == 0
    assert out.splitlines()[0].startswith(f"removed shards {cache_key(served)} (") and out.splitlines()[0].endswith(served)
    assert out.splitlines()[1].startswith("removed decoded 00aa00aa00aa00aa (")
    assert sorted(p.name for p in cache_root.iterdir()) == ["decoded", "not-a-key", "notes.txt"]
    assert json.loads(run("cache", "ls", "--json")[1]) == []


def test_clear_by_key_and_all_leave_other_files_alone(cache_root: Path) -> None:
    code, out = run("cache", "clear", "00aa00aa00aa00aa")
    assert code == 0 and out.count("removed") == 1
    code, out = run("cache", "clear", "--all")
    assert code == 0 and out.count("removed") == 1
    assert sorted(p.name for p in cache_root.iterdir()) == ["decoded", "not-a-key", "notes.txt"]
    assert run("cache", "ls")[1].startswith("nothing cached under ")


def test_clear_errors_are_one_line_exit_1(cache_root: Path) -> None:
    code, out = run("cache", "clear", "https://nowhere/ds")
    assert code == 1
    assert out.strip() == "Error: https://nowhere/ds: no cached dataset has this key, URL or folder; `infer cache ls` lists them"
    code, out = run("cache", "clear")
    assert code == 1 and out.strip() == ("Error: infer cache clear: give a key, URL or folder from `infer cache ls`, "
                                         "or --all (not both)")


def test_mirror_progress_bar_goes_to_stderr_only_when_asked(served: str, tiny_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fetch_dataset(served, tmp_path / "a", progress=True)
    err = capsys.readouterr().err
    total = sum(p.stat().st_size for p in tiny_dir.glob("*.tar"))
    assert err.splitlines()[-1].startswith(f"download {served}: 100%") and f"{total / 1024:.1f}k/{total / 1024:.1f}k" in err
    fetch_dataset(served, tmp_path / "b", progress=None)  # not a terminal here: no bar
    fetch_dataset(served, tmp_path / "c", progress=False)
    assert capsys.readouterr().err == ""
