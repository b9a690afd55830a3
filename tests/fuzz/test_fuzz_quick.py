"""The quick seeded fuzz run: every mutation kind through every reader, no defect allowed.

The long run (bench/fuzz.py) draws many more cases from the same engine; this one runs each kind
once per seed so a regression in any reader shows up in ``make test``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fuzz.harness import ALL_KINDS, Fuzzer

# A reader abandoned mid-shard by an error leaves its file to the garbage collector (webdataset's
# iterators are generators); that is a late close, not a wrong result, so it is not a failure here.
pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning")


@pytest.fixture(scope="module")
def fuzzer(tmp_path_factory: pytest.TempPathFactory) -> Fuzzer:
    mp = pytest.MonkeyPatch()
    mp.setenv("INFER_FETCH_DEADLINE", "1")
    fz = Fuzzer(tmp_path_factory.mktemp("fuzz"))
    yield fz
    fz.close()
    mp.undo()


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_every_reader_refuses_or_serves_unchanged(fuzzer: Fuzzer, kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFER_FETCH_DEADLINE", "1")
    bad = []
    for i in range(2):
        for variant, k, out in fuzzer.run(20260, ALL_KINDS.index(kind) * 2 + i, kinds=(kind,)):
            assert k == kind
            if out.result in ("defect", "bad_message", "leftover") or out.detail == "silent":
                bad.append(f"{variant} {out.reader}: {out.result} {out.detail}")
    assert not bad, bad


def test_the_engine_is_seeded(tmp_path: Path, fuzzer: Fuzzer) -> None:
    """The same seed and case number give the same mutated bytes."""
    def snapshot() -> dict[str, bytes]:
        _, _, case, _ = fuzzer.mutate(7, 3, kinds=("byte_flip",))
        return {p.name: p.read_bytes() for p in sorted(case.iterdir()) if p.is_file()}

    assert snapshot() == snapshot()


def test_fast_lanes_have_no_defects(tmp_path: Path) -> None:
    """300 mutated index files and group members into the shared gates: refused or parsed, never a traceback."""
    from fuzz.fastlane import FastLane

    lane = FastLane(tmp_path)
    results = [out for i in range(300) for _, _, out in lane.run(20261, i)]
    assert [o for o in results if o.result in ("defect", "bad_message")] == []
    assert {o.result for o in results} >= {"same", "infer_error"}
