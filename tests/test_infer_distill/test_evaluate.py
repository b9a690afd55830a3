"""Student training on distilled data: recipes, the KL loss, static and dynamic labels, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from builders import make_groups, write_dataset
from torch import nn

from infer_data import (
    ConfigError,
    DatasetInfo,
    InferDataset,
    MethodInfo,
    RegistryError,
    ShardWriter,
)
from infer_data.loader import DeviceLoader
from infer_distill.evaluate import (
    PRESETS,
    StudentConfig,
    default_preset,
    ensemble_logits,
    kd_loss,
    make_config,
    parse_teacher_spec,
    source_spec_of,
    train_student,
)
from infer_distill.train_student import training_targets


class Split:
    """A small labelled test split held in memory (the interface evaluation reads)."""

    def __init__(self, n: int = 40, nc: int = 4, chw: tuple[int, int, int] = (3, 8, 8), seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.data = torch.randint(0, 256, (n, *chw), generator=g, dtype=torch.uint8)
        self.targets = torch.randint(0, nc, (n,), generator=g)
        self.classes = [f"class{i}" for i in range(nc)]

    def __len__(self) -> int:
        return len(self.targets)

    def images(self, indices: torch.Tensor) -> torch.Tensor:
        return self.data[torch.as_tensor(indices)]


def small_net(c: int = 3, nc: int = 4, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(c, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, nc))


@pytest.fixture(scope="module")
def ds(tmp_path_factory: pytest.TempPathFactory) -> InferDataset:
    return InferDataset(write_dataset(tmp_path_factory.mktemp("ev") / "ds", make_groups(3, 4, 2, (3, 8, 8))))


def test_presets_follow_the_paper_recipes() -> None:
    cifar, tiny, imnet = (PRESETS.get(n) for n in ("cifar", "tinyimagenet", "imagenet"))
    assert (cifar.config.optimizer, cifar.config.lr, cifar.config.weight_decay, cifar.config.batch_size,
            cifar.config.epochs, cifar.dynamic_epochs) == ("adamw", 1e-3, 0.01, 64, 400, 80)
    assert (tiny.config.optimizer, tiny.config.lr, tiny.config.batch_size, tiny.config.epochs) == ("sgd", 0.2, 64, 200)
    assert (imnet.config.batch_size, imnet.config.epochs, imnet.dynamic_epochs) == (32, 300, 75)
    assert make_config("cifar", labels="dynamic").epochs == 80
    assert make_config("cifar", labels="dynamic", epochs=5).epochs == 5
    assert make_config("tinyimagenet", lr=None, batch_size=16).batch_size == 16  # None = keep the preset's
    assert default_preset("cifar10", 32) == "cifar" and default_preset("other", 64) == "tinyimagenet"


def test_config_errors() -> None:
    with pytest.raises(RegistryError, match=r"unknown student recipe 'cifr'; known: .*Did you mean cifar"):
        make_config("cifr")
    with pytest.raises(ConfigError, match=r"unknown student option\(s\) learning_rate; known:"):
        make_config("cifar", learning_rate=0.1)
    with pytest.raises(ConfigError, match=r"labels='soft' is not valid; choose one of 'static', 'dynamic'"):
        StudentConfig(labels="soft")
    with pytest.raises(ConfigError, match=r"epochs=0 must be >= 1"):
        StudentConfig(epochs=0)
    with pytest.raises(ConfigError, match=r"--teacher 'resnet18': expected ARCH=CHECKPOINT"):
        parse_teacher_spec("resnet18")
    assert parse_teacher_spec("convnet=a/b.pt") == ("convnet", Path("a/b.pt"))


def test_kd_loss_is_the_tempered_kl() -> None:
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g) * 3
    assert float(kd_loss(t, t, 30.0)) == pytest.approx(0.0, abs=1e-7)
    p, q = torch.softmax(s / 4, 1), torch.softmax(t / 4, 1)
    want = (q * (q.log() - p.log())).sum(1).mean()
    assert float(kd_loss(s, t, 4.0)) == pytest.approx(float(want), rel=1e-5)


def test_dynamic_labels_are_the_ensemble_mean_on_the_same_batch(ds: InferDataset) -> None:
    teachers = [small_net(seed=s).eval() for s in (1, 2)]
    config = StudentConfig(labels="dynamic", batch_size=8)
    images, targets = next(iter(DeviceLoader(ds, batch_size=8, targets="class")))
    labels = training_targets(images, targets, teachers, config)
    with torch.no_grad():
        want = (teachers[0](images) + teachers[1](images)) / 2
    assert torch.allclose(labels, want, atol=1e-6)
    assert torch.allclose(ensemble_logits(teachers, images), want, atol=1e-6)
    static = training_targets(images, targets, teachers, StudentConfig())
    assert static is targets


def test_dynamic_training_never_updates_the_teachers(ds: InferDataset) -> None:
    teachers = [small_net(seed=s).train() for s in (1, 2)]
    before = [{k: v.clone() for k, v in t.state_dict().items()} for t in teachers]
    result = train_student(ds, Split(), StudentConfig(labels="dynamic", epochs=2, batch_size=8), teachers=teachers,
                           student=small_net(), device="cpu", progress=False)
    assert 0 <= result.top1 <= 100
    for t, state in zip(teachers, before):
        assert not t.training
        assert all(torch.equal(v, state[k]) for k, v in t.state_dict().items())  # BN running stats too


def test_static_training_fits_the_stored_labels(ds: InferDataset) -> None:
    torch.manual_seed(0)
    student = nn.Sequential(nn.Flatten(), nn.Linear(192, 64), nn.ReLU(), nn.Linear(64, 4))  # can memorize 36 rows
    config = StudentConfig(epochs=12, batch_size=12, lr=3e-2, temperature=1.0, mixup_beta=0, augment="none", eval_every=4)
    result = train_student(ds, Split(), config, student=student, device="cpu", progress=False)
    losses = [row["loss"] for row in result.history]
    assert losses[-1] < 0.5 * losses[0]  # learns from the stored logits
    assert [row["epoch"] for row in result.history if "top1" in row] == [4, 8, 12]
    assert result.top1 == result.history[-1]["top1"]
    assert result.best_top1 == max(row["top1"] for row in result.history if "top1" in row)
    assert result.config["epochs"] == 12 and result.config["instances"] == 36


def test_train_student_errors(ds: InferDataset, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"test data has 3 classes but the distilled set .* has 4; pass the test split"):
        train_student(ds, Split(nc=3), StudentConfig(epochs=1), student=small_net(), progress=False)
    with pytest.raises(ConfigError, match=r"test data images have 1 channel\(s\) but the distilled set .* has 3; pass the test split"):
        train_student(ds, Split(chw=(1, 8, 8)), StudentConfig(epochs=1), student=small_net(), progress=False)
    with pytest.raises(ConfigError, match=r"labels='dynamic' needs teacher networks to relabel each batch; pass --teacher"):
        train_student(ds, Split(), StudentConfig(epochs=1, labels="dynamic"), student=small_net(), progress=False)
    root = write_dataset(tmp_path / "nolabels", make_groups(1, 4, 1, (3, 8, 8)), codecs={"labels": "none"})
    with pytest.raises(ConfigError, match=r"stores no soft labels; use labels='dynamic' with --teacher ARCH=CHECKPOINT"):
        train_student(InferDataset(root, target="class"), Split(), StudentConfig(epochs=1), student=small_net(), progress=False)


def test_test_split_defaults_to_the_recorded_source(tmp_path: Path, ds: InferDataset) -> None:
    info = DatasetInfo("cifar10", [f"c{i}" for i in range(4)], (3, 8, 8), [0.5] * 3, [0.25] * 3, source="/data/c10")
    with ShardWriter(tmp_path / "p", dataset=info, method=MethodInfo(4, 2, 0, 10, ["t0", "t1"]),
                     provenance={"source": {"name": "imagefolder", "spec": "imagefolder:/data/c10"}}) as w:
        for rec in make_groups(1, 4, 2, (3, 8, 8)):
            w.write_group(rec)
    assert source_spec_of(InferDataset(tmp_path / "p")) == "imagefolder:/data/c10"
    assert source_spec_of(ds) == "toy"  # no provenance: the dataset name in the index


def test_runs_are_reproducible_and_leave_the_global_rng_alone(ds: InferDataset) -> None:
    config = StudentConfig(arch="convnet", epochs=2, batch_size=8, eval_every=1)
    state = torch.get_rng_state()
    a = train_student(ds, Split(), config, device="cpu", progress=False)
    assert torch.equal(torch.get_rng_state(), state)
    b = train_student(ds, Split(), config, device="cpu", progress=False)
    assert a.history == b.history and a.top1 == b.top1
    c = train_student(ds, Split(), StudentConfig(arch="convnet", epochs=2, batch_size=8, seed=1), device="cpu", progress=False)
    assert c.history[0]["loss"] != a.history[0]["loss"]
