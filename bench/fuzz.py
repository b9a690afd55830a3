"""Long fuzz run: seeded mutated datasets through every reader, in child processes with a per-case timeout.

    .venv/bin/python bench/fuzz.py --cases 6000 --seed 1 --workers 2 --out fuzz.json

Each case is one mutated dataset (tests/fuzz/mutations.py) read by every reader
(tests/fuzz/harness.py). Cases run in ``--workers`` child processes; a case that prints nothing
for ``--timeout`` seconds is a hang (its child is killed and restarted at the next case). Peak
memory is the child's VmHWM after each reader, reset before it (/proc/self/clear_refs). Prints
per-reader and per-kind counts: cases, same content, changed content (re-signed or unverified,
allowed), InferErrors, defects (other exceptions, multi-line or escape-code messages, temporary
files left), silent changes (content changed with sha256 on and no re-signed index), hangs, and
the largest peak RSS.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _reset_peak() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def worker(seed: int, start: int, stop: int, work: Path, lane: str, kinds: str = "") -> None:
    """Run cases ``start..stop-1`` of ``lane`` (``full`` or ``fast``) and print one JSON line per event;
    ``kinds``: comma-separated mutation kinds of the full lane (default all)."""
    sys.path[:] = [str(ROOT / "tests"), str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
    from fuzz.fastlane import FastLane
    from fuzz.harness import ALL_KINDS, Fuzzer, case_plan

    chosen = tuple(kinds.split(",")) if kinds else ALL_KINDS
    fz = Fuzzer(work) if lane == "full" else FastLane(work)
    print(json.dumps({"ready": True, "rss_kib": _rss_kib("VmRSS")}), flush=True)
    for i in range(start, stop):
        kind = case_plan(seed, i, chosen)[2] if lane == "full" else "?"
        print(json.dumps({"start": i, "kind": kind}), flush=True)
        runs = fz.run(seed, i, chosen, on_mutated=_reset_peak) if isinstance(fz, Fuzzer) else fz.run(seed, i, on_mutated=_reset_peak)
        for variant, kind, out in runs:
            print(json.dumps({"i": i, "variant": variant, "kind": kind, "reader": out.reader, "result": out.result,
                              "detail": out.detail, "peak_kib": _rss_kib("VmHWM")}), flush=True)
            _reset_peak()
    if isinstance(fz, Fuzzer):
        fz.close()
    print(json.dumps({"finished": True}), flush=True)


class Tally:
    """Counts per reader and per kind."""

    COLUMNS = ("cases", "same", "changed_ok", "infer_error", "defect", "silent", "hang", "peak_mib")

    def __init__(self) -> None:
        self.by: dict[str, dict[str, collections.Counter[str]]] = {"reader": collections.defaultdict(collections.Counter),
                                                                    "kind": collections.defaultdict(collections.Counter)}
        self.defects: collections.Counter[str] = collections.Counter()
        self.inputs = 0
        self.baseline_mib = 0  # a worker's RSS after its setup, before any case

    def add(self, ev: dict[str, Any]) -> None:
        res = ev["result"]
        col = {"same": "same", "infer_error": "infer_error"}.get(res, "defect")
        if res == "changed":
            col = "silent" if ev["detail"] == "silent" else "changed_ok"
        if col in ("defect", "silent"):
            self.defects[f"{ev['reader']} / {ev['kind']} / {res}: {ev['detail'][:150]}"] += 1
        for axis, key in (("reader", ev["reader"]), ("kind", ev["kind"])):
            c = self.by[axis][key]
            c["cases"] += 1
            c[col] += 1
            c["peak_mib"] = max(c["peak_mib"], ev["peak_kib"] // 1024)

    def hang(self, kind: str, reader: str) -> None:
        for axis, key in (("reader", reader), ("kind", kind)):
            self.by[axis][key]["cases"] += 1
            self.by[axis][key]["hang"] += 1
        self.defects[f"{reader} / {kind} / hang"] += 1

    def table(self, axis: str) -> str:
        rows = [f"| {axis} | " + " | ".join(self.COLUMNS) + " |", "|---" * (len(self.COLUMNS) + 1) + "|"]
        total: collections.Counter[str] = collections.Counter()
        for key in sorted(self.by[axis]):
            c = self.by[axis][key]
            rows.append(f"| {key} | " + " | ".join(str(c[col]) for col in self.COLUMNS) + " |")
            for col in self.COLUMNS:
                total[col] = max(total[col], c[col]) if col == "peak_mib" else total[col] + c[col]
        rows.append("| total | " + " | ".join(str(total[col]) for col in self.COLUMNS) + " |")
        return "\n".join(rows)


def _spawn(seed: int, start: int, stop: int, work: Path, lane: str, kinds: str = "") -> subprocess.Popen[str]:
    cmd = [sys.executable, __file__, "--worker", "--seed", str(seed), "--start", str(start), "--stop", str(stop), "--work", str(work),
           "--lane", lane, "--kinds", kinds]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=os.environ | {"INFER_FETCH_DEADLINE": "1"})


def run(cases: int, seed: int, workers: int, timeout: float, work: Path, lane: str = "full", kinds: str = "") -> Tally:
    """Run ``cases`` cases of ``lane`` over ``workers`` children; returns the tally."""
    tally = Tally()
    per = -(-cases // workers)
    jobs = {w: [w * per, min(cases, (w + 1) * per)] for w in range(workers)}
    procs = {w: _spawn(seed, *jobs[w], work / f"{lane}{w}", lane, kinds) for w in jobs if jobs[w][0] < jobs[w][1]}
    current: dict[int, dict[str, Any]] = {}
    last = {w: time.monotonic() for w in procs}
    while procs:
        ready, _, _ = select.select([p.stdout for p in procs.values()], [], [], 1.0)
        for w, p in list(procs.items()):
            if p.stdout in ready:
                line = p.stdout.readline()
                if not line:
                    p.wait()
                    del procs[w]
                    continue
                last[w] = time.monotonic()
                ev = json.loads(line)
                if "ready" in ev:
                    tally.baseline_mib = max(tally.baseline_mib, ev["rss_kib"] // 1024)
                elif "start" in ev:
                    current[w] = ev | {"readers": set()}
                    tally.inputs += 1
                elif "reader" in ev:
                    current[w]["readers"].add(ev["reader"])
                    tally.add(ev)
            elif w in current and time.monotonic() - last[w] > timeout:
                p.kill()
                p.wait()
                ev = current.pop(w)
                order = ("verify", "dataset_sha", "dataset_nosha", "wds_sha", "stream_http", "url_fetch") if lane == "full" else ("fast",)
                from_reader = next((r for r in order if r not in ev["readers"]), "?")
                tally.hang(ev["kind"], from_reader)
                jobs[w][0] = ev["start"] + 1
                del procs[w]
                if jobs[w][0] < jobs[w][1]:
                    procs[w] = _spawn(seed, *jobs[w], work / f"{lane}{w}", lane, kinds)
                    last[w] = time.monotonic()
    return tally


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, default=1000, help="mutated datasets (each read by every reader)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds without progress that make a hang")
    ap.add_argument("--fast", type=int, default=0, help="inputs for the fast lanes (index parser, group decoder), after the cases")
    ap.add_argument("--out", type=Path, default=None, help="write the tables and defect list as JSON here")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--stop", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--work", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--lane", default="full", help=argparse.SUPPRESS)
    ap.add_argument("--kinds", default="", help="comma-separated mutation kinds for the full lane (default: all)")
    args = ap.parse_args()
    if args.worker:
        worker(args.seed, args.start, args.stop, args.work, args.lane, args.kinds)
        return
    results = {}
    for lane, n in (("full", args.cases), ("fast", args.fast)):
        if n <= 0:
            continue
        t0 = time.time()
        with tempfile.TemporaryDirectory(prefix="infer-fuzz-") as tmp:
            tally = run(n, args.seed, args.workers, args.timeout, Path(tmp), lane, args.kinds)
        what = "mutated datasets, each through every reader" if lane == "full" else "mutated inputs to the shared gates"
        print(f"[{lane}] {tally.inputs} {what}, seed {args.seed}, {time.time() - t0:.0f} s wall, "
              f"worker RSS after setup {tally.baseline_mib} MiB\n")
        print(tally.table("reader") + "\n\n" + tally.table("kind") + "\n")
        for text, count in tally.defects.most_common(40):
            print(f"{count:6d}  {text}")
        print(flush=True)
        results[lane] = {"inputs": tally.inputs, "baseline_mib": tally.baseline_mib, "seconds": round(time.time() - t0), "by": tally.by, "defects": tally.defects}
    if args.out is not None:
        args.out.write_text(json.dumps({"seed": args.seed, **results}, indent=1))


if __name__ == "__main__":
    main()
