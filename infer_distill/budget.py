"""The INFER image budget: how many groups fit in ``ipc`` stored images per class.

A group stores K base images and M compensators, so G groups cost G * (K + M) images against a
budget of ipc * K: ``G = floor(ipc / (M / K + 1)) = floor(ipc * K / (K + M))`` (DESIGN section 2).
"""

from __future__ import annotations

from infer_data.errors import ConfigError


def num_groups(ipc: int, k: int, m: int) -> int:
    """Groups G that fit the budget; computed in integers, so no rounding surprises.

    Args:
        ipc: stored images per class, >= 1.
        k: classes (base images per group), >= 1.
        m: compensators per group (teachers), >= 0; 0 gives the random-real baseline, G = ipc.

    Example:
        >>> num_groups(10, 10, 4), num_groups(10, 100, 4), num_groups(10, 1000, 3), num_groups(50, 1000, 3)
        (7, 9, 9, 49)

    Raises:
        ConfigError: a non-positive argument, or an ipc too small for a single group.
    """
    if ipc < 1 or k < 1 or m < 0:
        raise ConfigError(f"--ipc must be >= 1 (got {ipc}) with K >= 1 classes (got {k}) and M >= 0 teachers (got {m})")
    g = (ipc * k) // (k + m)
    if g == 0:
        need = -(-(k + m) // k)
        raise ConfigError(
            f"--ipc {ipc} is too small for one group: a group stores K+M={k + m} images (K={k} classes, M={m} teachers) "
            f"but the budget is ipc*K={ipc * k}; use --ipc {need} or more, or fewer teachers"
        )
    return g


def stored_images(groups: int, k: int, m: int) -> int:
    """Images stored by ``groups`` groups, G * (K + M).

    Example:
        >>> stored_images(7, 10, 4)
        98
    """
    return groups * (k + m)
