"""Model files: the one way every GeoFlora model is saved and loaded.

A checkpoint is a ``torch.save`` dictionary with ``format`` (the model kind, e.g. ``geoflora-sdm``)
and ``version``, written atomically (a reader sees the old file or the new one). Loading checks
both, so a wrong file gets a clear error naming what it is, instead of a KeyError deep inside a
model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from backend.core.atomic import atomic_path
from backend.core.errors import CheckpointError, CheckpointMissing
from inference.models import kind as model_kind


def save_torch(path: str | Path, obj: Any) -> Path:
    """``torch.save(obj)`` to ``path``, atomically (checkpoints, resumable state, feature caches)."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


def save_checkpoint(path: str | Path, kind: str, version: int, payload: dict) -> Path:
    """A model checkpoint of ``kind`` (its ``format``) and ``version`` with ``payload``'s entries."""
    return save_torch(path, {"format": kind, "version": version, **payload})


def load_checkpoint(path: str | Path, kind: str, versions: tuple[int, ...], model: str,
                    map_location: str = "cpu") -> dict:
    """The checkpoint at ``path``, checked to be of format ``kind`` and one of ``versions``;
    ``model`` is the model kind of :mod:`inference.models` (its title and train command are named
    in the errors)."""
    mk = model_kind(model)
    what = mk.title
    path = Path(path)
    if not path.is_file():
        raise CheckpointMissing(f"no {what} checkpoint at {path}: run `{mk.train_command}`")
    try:
        ck = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same error to the user
        raise CheckpointError(f"{path} is not a {what} checkpoint (unreadable: {type(exc).__name__}: {exc})") from exc
    found = ck.get("format") if isinstance(ck, dict) else None
    if found != kind:
        raise CheckpointError(f"{path} is not a {what} checkpoint"
                              + (f" (it is a {found!r} file)" if found else f" (no GeoFlora {kind!r} format)"))
    if ck.get("version", 1) not in versions:
        raise CheckpointError(f"{path} is a {what} checkpoint of version {ck.get('version')}; this GeoFlora reads "
                              f"version {', '.join(map(str, versions))}: train it again")
    return ck
