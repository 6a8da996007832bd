"""The pieces every trainer shares: device resolution, seeding, best state with patience, and the
training report, written atomically beside the checkpoint."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from backend.core.atomic import write_json


def resolve_device(setting: str = "auto") -> str:
    """``auto``: CUDA when present, else the CPU; ``cpu`` and ``cuda`` as given."""
    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return setting


def seed_everything(seed: int) -> np.random.Generator:
    """Seed Python, NumPy's global state and torch (CPU and CUDA); returns a NumPy generator."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


class BestState:
    """The best model state seen so far on a validation score (higher is better), and how many
    epochs have passed without a better one (patience).

    ``keep``: which state-dict keys to copy (``keep(name)`` true); the others -- say a large frozen
    encoder, ``keep=lambda name: not name.startswith("encoder.")`` -- are neither copied nor
    restored, and :meth:`restore` checks that only those are missing. Default: every key."""

    def __init__(self, patience: int | None = None, keep: Callable[[str], bool] | None = None) -> None:
        self.patience = patience
        self.keep = keep
        self.score = -float("inf")
        self.state: dict | None = None
        self.epoch: int | None = None
        self.bad_epochs = 0

    def update(self, score: float, model: torch.nn.Module, epoch: int | None = None) -> bool:
        """Record ``score``; keep a CPU copy of ``model``'s state when it is the best. True if it is."""
        if score > self.score:
            self.score, self.epoch, self.bad_epochs = float(score), epoch, 0
            self.state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()
                          if self.keep is None or self.keep(k)}
            return True
        self.bad_epochs += 1
        return False

    @property
    def stop(self) -> bool:
        return self.patience is not None and self.bad_epochs >= self.patience

    def restore(self, model: torch.nn.Module) -> None:
        """Load the best state into ``model`` (nothing before the first :meth:`update`)."""
        if self.state is None:
            return
        if self.keep is None:
            model.load_state_dict(self.state)
            return
        missing, unexpected = model.load_state_dict(self.state, strict=False)
        bad = [k for k in missing if self.keep(k)]
        if bad or unexpected:
            raise RuntimeError(f"the best state does not fit the model: missing {bad}, unexpected {list(unexpected)}")

    def to_dict(self) -> dict:
        """What a resumable checkpoint keeps of it."""
        return {"score": self.score, "state": self.state, "epoch": self.epoch, "bad_epochs": self.bad_epochs}

    def load(self, d: dict) -> None:
        self.score, self.state, self.epoch, self.bad_epochs = d["score"], d["state"], d["epoch"], d["bad_epochs"]


def write_report(path: str | Path, report: dict) -> Path:
    """A training or evaluation report as indented JSON, atomically (NumPy numbers as floats)."""
    return write_json(path, report, indent=2, default=float)
