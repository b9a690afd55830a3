"""Teacher checkpoints: an atomic ``torch.save`` of a plain dict, loaded with ``weights_only=True``."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from infer_data.errors import ConfigError

from ._registry import TEACHERS, check_arch_args

logger = logging.getLogger(__name__)

CHECKPOINT_KEYS = ("arch", "num_classes", "in_channels", "image_size", "state_dict", "meta")


def save_teacher(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    arch: str,
    num_classes: int,
    in_channels: int,
    image_size: int,
    meta: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically (temporary file, then rename); returns the path.

    Args:
        meta: JSON-like extras (accuracy, epochs, dataset); only str/int/float/bool/list/dict.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    obj = {"arch": arch, "num_classes": int(num_classes), "in_channels": int(in_channels),
           "image_size": int(image_size), "state_dict": state, "meta": dict(meta or {})}
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)
    logger.info("saved %s teacher to %s", arch, path)
    return path


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"teacher checkpoint {path} does not exist; train one with `infer teacher train` or fix the path")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise ConfigError(f"teacher checkpoint {path} cannot be read safely ({type(exc).__name__}); it must be a torch.save'd dict of tensors") from exc
    if isinstance(obj, dict) and "state_dict" not in obj and isinstance(obj.get("net"), dict):
        obj = {"arch": None, "state_dict": obj["net"]}  # {"net": ..., "acc": ..., "epoch": ...} training scripts
    if isinstance(obj, dict) and "state_dict" not in obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        obj = {"arch": None, "state_dict": obj}  # a bare state_dict
    if not isinstance(obj, dict) or not isinstance(obj.get("state_dict"), dict):
        raise ConfigError(f"teacher checkpoint {path} holds no state_dict; save it with infer_distill.teachers.save_teacher")
    return {**obj, "state_dict": strip_prefix(obj["state_dict"], "module.")}


def strip_prefix(state: dict[str, Any], prefix: str) -> dict[str, Any]:
    """``state`` with ``prefix`` removed from every key when all keys carry it (DataParallel checkpoints).

    Example:
        >>> list(strip_prefix({"module.fc.weight": 1, "module.fc.bias": 2}, "module."))
        ['fc.weight', 'fc.bias']
    """
    if state and all(isinstance(k, str) and k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items()}
    return state


def state_mismatch(model: nn.Module, state: dict[str, Any]) -> str:
    """'' when ``state`` has exactly the keys and shapes of ``model``; else a short description of the first differences."""
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) if isinstance(v, torch.Tensor) else None for k, v in state.items()}
    missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
    shapes = [f"{k} {got[k]} vs {want[k]}" for k in want if k in got and got[k] != want[k]]
    parts = [f"{len(missing)} missing key(s) (first {missing[0]})"] if missing else []
    parts += [f"{len(extra)} unexpected key(s) (first {extra[0]})"] if extra else []
    parts += [f"{len(shapes)} shape mismatch(es) (first {shapes[0]})"] if shapes else []
    return ", ".join(parts)


def load_teacher(arch: str, path: str | os.PathLike[str], *, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """Build ``arch`` and load the checkpoint at ``path`` into it; returns it frozen, in eval mode.

    A bare ``state_dict`` file is accepted too, and so are the official INFER checkpoints: a dict
    with ``state_dict`` or ``net`` whose keys carry DataParallel's ``module.`` prefix (stripped).
    A bare or official state dict only has to fit ``arch``.

    Raises:
        RegistryError: unknown ``arch``.
        ConfigError: missing or unreadable file, or a checkpoint that does not fit ``arch`` and
            the requested sizes (the message names the file and both architectures).
    """
    path = Path(path)
    builder = TEACHERS.get(arch)
    check_arch_args(arch, num_classes, in_channels, image_size)
    obj = _read(path)
    found = obj.get("arch") or "unknown (bare state_dict)"
    want = {"num_classes": num_classes, "in_channels": in_channels, "image_size": image_size}
    if obj.get("arch") not in (None, arch):
        raise ConfigError(f"teacher checkpoint {path} holds a {found} but architecture {arch} was requested; pass {found}={path} or another checkpoint")
    bad = [f"{k}={obj[k]} (need {v})" for k, v in want.items() if k in obj and obj[k] != v]
    if bad:
        raise ConfigError(f"teacher checkpoint {path} ({found}) does not fit the {arch} requested here: {', '.join(bad)}; use a checkpoint trained on this dataset")
    model = builder(num_classes, in_channels=in_channels, image_size=image_size)
    problem = state_mismatch(model, obj["state_dict"])
    if problem:
        raise ConfigError(f"teacher checkpoint {path} ({found}) does not fit architecture {arch}: {problem}; "
                          "pass the architecture it was trained as or another checkpoint")
    model.load_state_dict(obj["state_dict"], strict=True)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def teacher_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a checkpoint file (recorded in the provenance of distilled data)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()
