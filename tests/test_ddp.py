"""DistributedDataParallel on CPU: 2 gloo processes split every epoch and end with identical weights."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from builders import make_groups, write_dataset
from torch import nn

from infer_data import InferDataset
from infer_data.loader import DeviceLoader
from infer_distill.evaluate import StudentConfig, distributed, train_student

WORLD = 2


class Split:
    """A small in-memory test split (4 classes, 3x8x8)."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.data = torch.randint(0, 256, (30, 3, 8, 8), generator=g, dtype=torch.uint8)
        self.targets = torch.randint(0, 4, (30,), generator=g)
        self.classes = ["a", "b", "c", "d"]

    def __len__(self) -> int:
        return 30

    def images(self, indices: torch.Tensor) -> torch.Tensor:
        return self.data[torch.as_tensor(indices)]


def _worker(rank: int, root: str, out: str, port: int) -> None:
    # As under torchrun, the rendezvous store is hosted outside the ranks (here: by the test),
    # so no rank's exit can pull the store from under another rank's teardown.
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD), TORCHELASTIC_USE_AGENT_STORE="True")
    torch.set_num_threads(1)
    ds = InferDataset(root)
    with distributed("cpu") as dev:
        loader = DeviceLoader(ds, batch_size=5)  # rank and world size from the process group
        seen = torch.stack([loader.indices(e) for e in range(3)])  # (epochs, N / 2)
        torch.manual_seed(100 + rank)  # a different initialization on each rank: DDP must sync it
        student = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
        result = train_student(ds, Split(), StudentConfig(epochs=3, batch_size=5, lr=1e-2, eval_every=3),
                               student=student, device=dev, progress=False)
    state = {k: v.detach().clone() for k, v in student.state_dict().items()}
    torch.save({"seen": seen, "state": state, "top1": torch.tensor(result.top1),
                "world": torch.tensor(result.config["world_size"])}, Path(out) / f"rank{rank}.pt")
    # Everything the test checks is on disk. Leave without interpreter teardown: on a loaded
    # machine torch's C++ shutdown occasionally aborts ("terminate called without an active
    # exception", no Python frame) after the process group is already destroyed.
    os._exit(0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(), reason="needs gloo")
def test_two_cpu_ranks_split_epochs_and_agree_on_weights(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "ds", make_groups(3, 4, 2, (3, 8, 8)))  # 36 instances
    port = _free_port()
    store = torch.distributed.TCPStore("127.0.0.1", port, WORLD, is_master=True, wait_for_workers=False)
    mp.spawn(_worker, args=(str(root), str(tmp_path), port), nprocs=WORLD, join=True)
    del store
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD))
    assert int(r0["world"]) == int(r1["world"]) == WORLD
    for e in range(3):
        a, b = set(r0["seen"][e].tolist()), set(r1["seen"][e].tolist())
        assert len(a) == len(b) == 18 and a.isdisjoint(b) and a | b == set(range(36))
    assert not torch.equal(r0["seen"][0], r0["seen"][1])  # a new permutation each epoch
    assert r0["state"].keys() == r1["state"].keys()
    for k, v in r0["state"].items():
        assert torch.equal(v, r1["state"][k]), k
    assert float(r0["top1"]) == float(r1["top1"])  # accuracy all-reduced over the ranks' test shards
