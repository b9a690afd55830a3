"""GroupRecord: one distilled group in memory, as the writer takes it and the reader returns it.

Glossary (INFER notation): K base images per group (one per class), M compensators per group
(one per teacher), G groups, C channels (1 or 3), H x W pixels, NC classes in the label space.

- ``bases``: uint8 [K, C, H, W], real images in 0..255.
- ``class_ids``: int64 [K], the class of each base image (0 <= id < NC).
- ``source_indices``: int64 [K], each base image's index in the source training set.
- ``compensators``: float32 [M, C, H, W], pixel-space deltas in units of the [0, 1] image
  range: instance (j >= 1, k) is ``clamp(bases[k] / 255 + compensators[j - 1], 0, 1)``.
- ``teachers``: M names, the teacher architecture each compensator was optimized against.
- ``labels``: float32 [K * (M + 1), NC] static soft-label logits, row ``j * K + k`` (view j
  of base k, view 0 = base alone), or ``None`` when only hard labels are kept.
- ``base_files``: for the ``passthrough`` base codec only, the K already-encoded image files
  (bytes) that ``bases`` decode from; they are stored byte for byte. ``None`` otherwise.
- ``crops``: for the ``crops`` labels codec only, float32 [K * (M + 1), R, 5 + NC]: per
  instance R crops, each top, left, height, width (fractions of the image side), flip (0 or 1)
  and NC logits. ``None`` otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import FormatError


@dataclass
class GroupRecord:
    """One group of a distilled dataset; see the module docstring for shapes and units."""

    bases: np.ndarray
    class_ids: np.ndarray
    source_indices: np.ndarray
    compensators: np.ndarray
    teachers: list[str]
    labels: np.ndarray | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    base_files: list[bytes] | None = None
    crops: np.ndarray | None = None

    @property
    def k(self) -> int:
        """Base images in the group."""
        return int(self.bases.shape[0])

    @property
    def m(self) -> int:
        """Compensators in the group."""
        return int(self.compensators.shape[0])

    def validate(self, *, image_shape: tuple[int, ...], num_classes: int, where: str) -> None:
        """Check shapes, dtypes and ranges against the dataset description.

        Args:
            image_shape: (C, H, W) every image must have.
            num_classes: width of the label rows and bound of ``class_ids``.
            where: what to name in messages (e.g. ``"group 3"``).

        Raises:
            FormatError: naming ``where``, the field, what was found and what was expected.
        """
        _expect(self.bases, "bases", np.uint8, (None, *image_shape), where)
        k = self.k
        _expect(self.compensators, "compensators", None, (None, *image_shape), where)
        _expect(self.class_ids, "class_ids", None, (k,), where)
        _expect(self.source_indices, "source_indices", None, (k,), where)
        if len(self.teachers) != self.m:
            raise FormatError(
                f"{where}: {len(self.teachers)} teacher names for {self.m} compensators; give one name per compensator"
            )
        ids = np.asarray(self.class_ids)
        if ids.size and (ids.min() < 0 or ids.max() >= num_classes):
            raise FormatError(f"{where}: class_ids must lie in 0..{num_classes - 1}, found {ids.min()}..{ids.max()}")
        if self.labels is not None:
            _expect(self.labels, "labels", None, (k * (self.m + 1), num_classes), where)
        if self.crops is not None:
            _expect(self.crops, "crops", None, (k * (self.m + 1), None, 5 + num_classes), where)
        if self.base_files is not None and (len(self.base_files) != k or not all(isinstance(f, bytes) for f in self.base_files)):
            raise FormatError(f"{where}: base_files must be {k} bytes objects, one file per base image")
        if not np.isfinite(self.compensators).all():
            raise FormatError(f"{where}: compensators contain NaN or inf; check the optimization")


def _expect(arr: Any, name: str, dtype: Any, shape: tuple[int | None, ...], where: str) -> None:
    if not isinstance(arr, np.ndarray):
        raise FormatError(f"{where}: {name} must be a numpy array, got {type(arr).__name__}")
    if dtype is not None and arr.dtype != dtype:
        raise FormatError(f"{where}: {name} must be {np.dtype(dtype).name}, got {arr.dtype}")
    ok = arr.ndim == len(shape) and all(s is None or s == a for s, a in zip(shape, arr.shape))
    if not ok:
        want = "x".join("?" if s is None else str(s) for s in shape)
        raise FormatError(f"{where}: {name} has shape {tuple(arr.shape)}, expected {want}")
