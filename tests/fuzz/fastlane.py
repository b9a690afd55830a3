"""The fast lanes: many mutated inputs straight into the two gates every reader shares.

- ``index_json``: a mutated index.json (the ``index_*`` kinds) parsed by ``DatasetIndex.from_json``,
  the first thing verify, InferDataset, the webdataset stages, the stream and the URL mirror do.
- ``group_decode``: one group's members mutated in memory (the member kinds) and decoded by
  ``decode_sample``, the bounded decoder behind the stream and webdataset stages, which checks each
  member against the schema and calls ``decode_group`` (the decoder of verify and InferDataset).

An input is ``same`` (parsed or decoded to the unmutated content), ``changed_ok`` (accepted and
different: the bytes are valid, as a re-signed shard may be), ``infer_error`` or ``defect``.
"""

from __future__ import annotations

import random
import shutil
import tarfile
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import fuzz.mutations as mut
from fuzz.harness import BASE_VARIANTS, Outcome, _digest, _record_arrays, make_bases

from infer_data import InferError
from infer_data.index import DatasetIndex, read_index
from infer_data.reader import GroupSchema
from infer_data.streamstages import decode_sample

INDEX_KINDS = tuple(k for k in mut.KINDS if k.startswith("index_"))
LANES = ("index_json", "group_decode")


class FastLane:
    """Base datasets, their parsed indexes and first groups' members, and a scratch folder."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.bases = make_bases(work / "bases")
        self.index_bytes = {v: (p / "index.json").read_bytes() for v, p in self.bases.items()}
        self.index_ref = {v: DatasetIndex.from_json(b).to_json() for v, b in self.index_bytes.items()}
        self.schemas = {v: GroupSchema(read_index(p)) for v, p in self.bases.items()}
        self.members: dict[str, dict[str, bytes]] = {}
        for v, p in self.bases.items():
            with tarfile.open(p / "shard-000000.tar") as tar:
                self.members[v] = {i.name.split(".", 1)[1]: tar.extractfile(i).read() for i in tar.getmembers()
                                   if i.name.startswith("g000000.")}
        self.member_ref = {v: _digest(_record_arrays(decode_sample(self._sample(dict(m)), self.schemas[v])[1]))
                           for v, m in self.members.items()}
        self.scratch = work / "scratch"

    @staticmethod
    def _sample(members: dict[str, bytes]) -> dict[str, object]:
        return {"__key__": "g000000", "__url__": "memory", **members}

    def run(self, seed: int, i: int, on_mutated: Callable[[], None] | None = None) -> Iterator[tuple[str, str, Outcome]]:
        """Yield one ``(variant, kind, outcome)`` for input ``i`` (``on_mutated`` is accepted for
        symmetry with the full harness and called before the input is built)."""
        if on_mutated is not None:
            on_mutated()
        rng = random.Random(f"fast:{seed}:{i}")
        variant = rng.choice(sorted(BASE_VARIANTS))
        lane = LANES[i % len(LANES)]
        kind = rng.choice(INDEX_KINDS if lane == "index_json" else mut.MEMBER_KINDS)
        try:
            ref, got = self._index(rng, variant, kind) if lane == "index_json" else self._members(rng, variant, kind)
        except InferError as exc:
            msg = str(exc)
            bad = "\n" in msg or "\r" in msg or "\x1b" in msg
            yield variant, kind, Outcome(lane, "bad_message" if bad else "infer_error", msg[:300])
            return
        except Exception as exc:  # noqa: BLE001 - a defect is anything else
            tb = traceback.extract_tb(exc.__traceback__)
            where = f"{Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else "?"
            yield variant, kind, Outcome(lane, "defect", f"{type(exc).__name__} at {where}: {' '.join(str(exc).split())[:200]}")
            return
        yield variant, kind, Outcome(lane, "same" if got == ref else "changed", "" if got == ref else "valid after mutation")

    def _index(self, rng: random.Random, variant: str, kind: str) -> tuple[str, str]:
        shutil.rmtree(self.scratch, ignore_errors=True)
        self.scratch.mkdir(parents=True)
        (self.scratch / "index.json").write_bytes(self.index_bytes[variant])
        mut.KINDS[kind](rng, self.scratch)
        data = (self.scratch / "index.json").read_bytes()
        return self.index_ref[variant], DatasetIndex.from_json(data, where="index.json").to_json()

    def _members(self, rng: random.Random, variant: str, kind: str) -> tuple[str, str]:
        members = dict(self.members[variant])
        mut.MEMBER_TARGET = members
        try:
            mut.KINDS[kind](rng, self.scratch)
        finally:
            mut.MEMBER_TARGET = None
        record = decode_sample(self._sample(members), self.schemas[variant])[1]
        return self.member_ref[variant], _digest(_record_arrays(record))
