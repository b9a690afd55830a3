"""Arithmetic between flat instance indices and (group, view, slot) coordinates.

A dataset of G groups, each with K base images and M compensators, has N = G * K * (M + 1)
instances. Instance ``i`` is base slot ``k`` of group ``g`` seen through view ``j``, where view
0 is the base image alone and view ``j >= 1`` adds compensator ``j - 1``::

    i = g * K * (M + 1) + j * K + k        (0 <= k < K, 0 <= j <= M)

Within a group the stored label rows follow the same order: row ``r = j * K + k``.
"""

from __future__ import annotations

import torch


def num_instances(groups: int, k: int, m: int) -> int:
    """Number of training instances of ``groups`` groups.

    Example:
        >>> num_instances(7, 10, 4)
        350
    """
    return groups * k * (m + 1)


def split_index(i: int, k: int, m: int) -> tuple[int, int, int]:
    """Flat index -> (group, view, slot).

    Example:
        >>> split_index(23, 10, 1)
        (1, 0, 3)
    """
    per_group = k * (m + 1)
    g, r = divmod(i, per_group)
    j, slot = divmod(r, k)
    return g, j, slot


def expand(indices: torch.Tensor, k: int, m: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Vectorized :func:`split_index` on any device.

    Args:
        indices: int64 tensor (B,) of flat instance indices.
        k: base images per group.
        m: compensators per group.

    Returns:
        ``(group, view, slot)``, three int64 tensors (B,); ``row = view * k + slot`` indexes
        the group's label rows.

    Example:
        >>> [t.tolist() for t in expand(torch.tensor([0, 23]), 10, 1)]
        [[0, 1], [0, 0], [0, 3]]
    """
    per_group = k * (m + 1)
    group = torch.div(indices, per_group, rounding_mode="floor")
    row = indices - group * per_group
    view = torch.div(row, k, rounding_mode="floor")
    return group, view, row - view * k
