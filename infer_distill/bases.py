"""Base-image selection: one real training image per class per group, none used twice.

Each class's training indices are shuffled once by a generator seeded with the run's seed; group
g takes the g-th image of every class. The plan depends only on (targets, seed), so a larger
budget extends a smaller one, and the chosen source indices are recorded in every group.
"""

from __future__ import annotations

import numpy as np
import torch

from infer_data.errors import ConfigError


def seed_for(*keys: int) -> int:
    """A 63-bit seed derived from integer keys, e.g. ``(seed, group, teacher)``.

    Example:
        >>> seed_for(0, 1) == seed_for(0, 1) != seed_for(1, 0)
        True
    """
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(2, np.uint64)[0] >> np.uint64(1))


def select_bases(targets: torch.Tensor, num_classes: int, groups: int, *, seed: int) -> torch.Tensor:
    """Source indices of the base images, int64 (G, K): column k holds images of class k.

    Args:
        targets: int64 (N,) class ids of the training split.
        num_classes: K.
        groups: G.
        seed: selection seed.

    Raises:
        ConfigError: a class with fewer than G training images.
    """
    gen = torch.Generator().manual_seed(seed_for(seed, 0x5E1EC7))
    counts = torch.bincount(targets, minlength=num_classes)
    short = [c for c in range(num_classes) if int(counts[c]) < groups]
    if short:
        c = short[0]
        raise ConfigError(
            f"class {c} has {int(counts[c])} training images but {groups} groups need one each; lower --ipc "
            f"(at most {int(counts.min())} groups fit this dataset)"
        )
    plan = torch.empty(groups, num_classes, dtype=torch.int64)
    for c in range(num_classes):
        members = torch.nonzero(targets == c).flatten()  # (n_c,) ascending
        perm = torch.randperm(members.numel(), generator=gen)
        plan[:, c] = members[perm[:groups]]
    return plan
