"""infer distill under faults: a second run on the same --out, full / read-only / unwritable disks, files of
the user's in the way. Each fault is a one-line error and the rerun resumes to byte-identical output."""

from __future__ import annotations

import errno
import os
import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from infer_cli.main import main

from infer_data.atomic import DirLock
from infer_data.errors import ConfigError
from infer_distill.workdir import WORK_DIRNAME

NAMES = ("README.md", "index.json", "shard-000000.tar", "shard-000001.tar")


def _args(teachers: dict[str, Path], out: Path) -> list[str]:
    """G = 2 groups (ipc 3, K = 10, M = 2), one per shard, 2 steps per compensator."""
    return ["distill", "--ipc", "3", "--teacher", f"convnet={teachers['a']}", "--teacher", f"convnet={teachers['b']}",
            "--iterations", "2", "--batch-groups", "1", "--shard-size", "1", "--seed", "4", "--out", str(out), "--no-progress"]


def _run(args: list[str]) -> tuple[int, str]:
    result = CliRunner().invoke(main, args)
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, embedded_teachers: dict[str, Path]) -> dict[str, bytes]:
    """The bytes of an undisturbed run."""
    out = tmp_path_factory.mktemp("ref") / "out"
    code, text = _run(_args(embedded_teachers, out))
    assert code == 0, text
    assert sorted(p.name for p in out.iterdir()) == sorted(NAMES)  # no lock, work folder or temporary left
    return {name: (out / name).read_bytes() for name in NAMES}


def _same(out: Path, reference: dict[str, bytes]) -> None:
    assert sorted(p.name for p in out.iterdir()) == sorted(NAMES)
    for name in NAMES:
        assert (out / name).read_bytes() == reference[name], name


def test_a_second_run_on_the_same_out_refuses(tmp_path: Path, embedded_teachers: dict[str, Path], reference: dict[str, bytes]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with DirLock(out):  # what a running `infer distill` holds
        code, text = _run(_args(embedded_teachers, out))
    assert code == 1
    assert text == (f"Error: {out}: another infer process is writing to this folder (it holds .infer-lock); "
                    "wait for it to finish or choose another folder\n")
    code, text = _run(_args(embedded_teachers, out))
    assert code == 0, text
    _same(out, reference)


def test_a_killed_holder_releases_the_lock(tmp_path: Path) -> None:
    code = "import sys, time; from infer_data.atomic import DirLock; DirLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(120)"
    with subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None and proc.stdout.readline() == "held\n"
            with pytest.raises(ConfigError, match="another infer process is writing to this folder"):
                DirLock(tmp_path).acquire()
        finally:
            proc.kill()  # SIGKILL: no clean-up runs
            proc.wait()
    assert (tmp_path / ".infer-lock").exists()  # the file stays, the lock does not
    with DirLock(tmp_path) as lock:
        assert lock.held


class _Faults:
    """Make ``os.open``/``os.write`` on files under ``folder`` fail with ``err`` after ``after`` successful calls."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, folder: Path, err: int, after: int) -> None:
        self.folder, self.err, self.left = str(folder), err, after
        self.real_open, self.real_write = os.open, os.write
        monkeypatch.setattr(os, "open", self.open)
        monkeypatch.setattr(os, "write", self.write)

    def _hit(self, path: str) -> None:
        if path.startswith(self.folder):
            if self.left == 0:
                raise OSError(self.err, os.strerror(self.err))
            self.left -= 1

    def open(self, path: str | os.PathLike[str], flags: int, *args: int, **kw: object) -> int:
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            self._hit(os.fspath(path))
        return self.real_open(path, flags, *args, **kw)  # type: ignore[arg-type]

    def write(self, fd: int, data: bytes) -> int:
        self._hit(os.readlink(f"/proc/self/fd/{fd}"))
        return self.real_write(fd, data)


@pytest.mark.parametrize(("err", "name", "hint"), [
    (errno.ENOSPC, "ENOSPC: No space left on device", "free some space"),
    (errno.EROFS, "EROFS: Read-only file system", "choose a folder on a writable file system"),
    (errno.EACCES, "EACCES: Permission denied", "choose a folder you may write to, or fix its permissions"),
])
@pytest.mark.parametrize("after", [0, 6])
def test_storage_faults_are_one_line_and_the_rerun_is_byte_identical(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, embedded_teachers: dict[str, Path], reference: dict[str, bytes],
        err: int, name: str, hint: str, after: int) -> None:
    out = tmp_path / "out"
    with monkeypatch.context() as m:
        _Faults(m, out, err, after)
        code, text = _run(_args(embedded_teachers, out))
    assert code == 1
    assert len(text.splitlines()) == 1 and text.startswith(f"Error: {out}")
    assert text.endswith(f": cannot write ({name}); {hint}, then rerun the same command; finished work is kept\n"), text
    if after:  # some groups were cached before the fault; they are kept for the rerun
        assert list((out / WORK_DIRNAME).glob("group-*.npz"))
    assert not list(out.glob("*.tar")) and not (out / "index.json").exists()
    code, text = _run(_args(embedded_teachers, out))
    assert code == 0, text
    _same(out, reference)


def _limit_file_size() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (9000, 9000))  # Python ignores SIGXFSZ, so a longer write fails with EFBIG


def test_file_size_limit_of_the_kernel(tmp_path: Path, embedded_teachers: dict[str, Path], reference: dict[str, bytes]) -> None:
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "infer_cli.distill", *_args(embedded_teachers, out)[1:]]
    proc = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=_limit_file_size, timeout=300)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: {out}"), proc.stderr
    assert "cannot write (EFBIG: File too large); raise the file-size limit (ulimit -f)" in lines[0]
    code, text = _run(_args(embedded_teachers, out))
    assert code == 0, text
    _same(out, reference)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders; the os-level faults above cover it")
def test_read_only_folder(tmp_path: Path, embedded_teachers: dict[str, Path], reference: dict[str, bytes]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o555)
    try:
        code, text = _run(_args(embedded_teachers, out))
    finally:
        out.chmod(0o755)
    assert code == 1 and text == (f"Error: {out / '.infer-lock'}: cannot write (EACCES: Permission denied); choose a folder you may "
                                  "write to, or fix its permissions, then rerun the same command; finished work is kept\n")
    code, text = _run(_args(embedded_teachers, out))
    assert code == 0, text
    _same(out, reference)


@pytest.mark.parametrize("place", [lambda out: out / "shard-000001.tar", lambda out: out / WORK_DIRNAME / "notes.txt"])
def test_files_of_the_user_are_refused_never_deleted(tmp_path: Path, embedded_teachers: dict[str, Path],
                                                    reference: dict[str, bytes], place: Callable[[Path], Path]) -> None:
    out = tmp_path / "out"
    mine = place(out)
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"the user's own file")
    code, text = _run(_args(embedded_teachers, out))
    assert code == 1 and len(text.splitlines()) == 1, text
    if mine.name == "notes.txt":
        assert text == f"Error: {mine.parent}: exists but is not a work folder of infer distill (no run.json); move it away, it is not deleted\n"
    else:
        assert text == (f"Error: {mine}: a file this writer did not create (not listed in index.json) has the name of a new shard; "
                        "move it away or write to another folder\n")
    assert mine.read_bytes() == b"the user's own file"
    mine.unlink()
    code, text = _run(_args(embedded_teachers, out))
    assert code == 0, text
    _same(out, reference)  # the emptied work folder went with the run's own files
