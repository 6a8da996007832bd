"""The model kinds GeoFlora trains and the cascade loads: the one place that names them.

Each :class:`ModelKind` says what the model is called, which function loads its checkpoint, the
command that trains it and its part in the cascade. Everything else (default checkpoint paths, the
cascade's ``{kind: path}``, error messages naming the train command) reads it from here, so a new
model is added by one entry and its loader.

This module imports neither torch nor any model: a kind's loader is imported on first use, so the
API and the command line can name the kinds without loading a model.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from backend.core.paths import DataLayout


@dataclass(frozen=True)
class ModelKind:
    """A model GeoFlora trains: ``loader`` is ``"module:function"``, called as ``function(path)``
    and returning the trained model on the CPU in eval mode (the SDM: model, normaliser and its
    checkpoint's metadata); ``cascade``: ``required`` (every run needs it), ``optional`` (used
    when its checkpoint exists) or ``none``. Its file is ``DataLayout.checkpoint(region, name)``."""

    name: str
    title: str
    loader: str
    cascade: str = "none"

    @property
    def train_command(self) -> str:
        return f"geoflora train {self.name}"

    def load(self, path: str | Path):
        """The model from its checkpoint at ``path`` (a clear error for a missing or wrong file)."""
        module, function = self.loader.split(":")
        loader: Callable = getattr(importlib.import_module(module), function)  # torch: only when a model loads
        return loader(Path(path))


KINDS: dict[str, ModelKind] = {k.name: k for k in (
    ModelKind("sdm", "SDM", "inference.sdm.model:load_sdm", cascade="required"),
    ModelKind("plantbert", "Pl@ntBERT", "inference.habitat.plantbert:load_plantbert", cascade="optional"),
    ModelKind("botaclip", "BotaCLIP", "inference.botaclip.model:load_botaclip", cascade="optional"),
    ModelKind("traits", "trait model", "inference.traits.predictor:load_traits"),
)}


def kind(name: str) -> ModelKind:
    """The kind called ``name``; a ValueError listing the known ones otherwise."""
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"unknown model kind {name!r}; one of {', '.join(KINDS)}") from None


def cascade_kinds() -> list[ModelKind]:
    """The kinds a run can use, required first."""
    return [k for k in KINDS.values() if k.cascade == "required"] + \
        [k for k in KINDS.values() if k.cascade == "optional"]


def default_checkpoints(layout: DataLayout, region: str) -> dict[str, Path]:
    """The cascade's models of ``region`` at their default paths: the required kinds always, the
    optional ones when their file exists."""
    return {k.name: path for k in cascade_kinds()
            if (path := layout.checkpoint(region, k.name)).is_file() or k.cascade == "required"}


def check_cascade_checkpoints(checkpoints: Mapping[str, str | Path | None]) -> dict[str, Path]:
    """``{kind: path}`` of a run, checked: every key a cascade kind, every required kind given,
    every given file present (a :class:`FileNotFoundError` naming the train command otherwise).
    Kinds given as None are left out."""
    known = {k.name: k for k in cascade_kinds()}
    out: dict[str, Path] = {}
    for name, path in checkpoints.items():
        if name not in known:
            raise ValueError(f"{name!r} is not a model of the cascade; one of {', '.join(known)}")
        if path is None:
            continue
        if not Path(path).is_file():
            raise FileNotFoundError(f"no {known[name].title} checkpoint at {path}: train one with "
                                    f"`{known[name].train_command}`")
        out[name] = Path(path)
    for k in known.values():
        if k.cascade == "required" and k.name not in out:
            raise FileNotFoundError(f"a run needs a {k.title} checkpoint: train one with `{k.train_command}`")
    return out
