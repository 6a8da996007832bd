"""Baselines for habitat classification from species lists, on the same inputs as Pl@ntBERT.

* :class:`MLPBaseline`: a multilayer perceptron on the rank-weighted multi-hot vector of the list
  (species at rank ``r`` of ``top_n`` weighs ``1 - r / top_n``: the first species 1, the last
  ``1 / top_n``, absent species 0), two hidden layers (512, 256), dropout, AdamW, the epoch with
  the best validation accuracy kept. ``weights="probability"``: a listed species weighs its
  probability where the list has them (predicted lists), its rank weight elsewhere (plots).
* :class:`DominantSpeciesRule`: the habitat most often seen with the list's first (dominant)
  species in the training data; the overall majority habitat for a first species never seen.
* :class:`MajorityBaseline`: always the most frequent training habitat (the floor).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .plantbert import PAD


def rank_weighted_multi_hot(tokens: np.ndarray, vocab_size: int, top_n: int,
                            values: np.ndarray | None = None) -> torch.Tensor:
    """float32 [n, vocab_size]: weight ``1 - r / top_n`` at each listed species (rank r), 0 elsewhere;
    with ``values`` [n, L], the species' probability where it is finite."""
    t = torch.from_numpy(np.ascontiguousarray(tokens[:, :top_n]).astype(np.int64))
    w = 1.0 - torch.arange(t.shape[1], dtype=torch.float32) / top_n
    w = w.expand_as(t)
    if values is not None:
        v = torch.from_numpy(np.ascontiguousarray(values[:, :t.shape[1]], dtype=np.float32))
        w = torch.where(torch.isfinite(v), v, w)
    w = w.masked_fill(t == PAD, 0.0)
    x = torch.zeros((len(t), vocab_size), dtype=torch.float32)
    x.scatter_add_(1, t, w)
    x[:, PAD] = 0.0
    return x


class MLPBaseline:
    def __init__(self, vocab_size: int, n_labels: int, top_n: int = 100, hidden=(512, 256), dropout: float = 0.2,
                 seed: int = 0, weights: str = "rank") -> None:
        if weights not in ("rank", "probability"):
            raise ValueError(f"MLP weights must be rank or probability, got {weights!r}")
        self.weights = weights
        torch.manual_seed(seed)
        self.vocab_size, self.n_labels, self.top_n, self.seed = vocab_size, n_labels, top_n, seed
        layers, d = [], vocab_size
        for h in hidden:
            layers += [nn.Linear(d, h), nn.ReLU(), nn.Dropout(dropout)]
            d = h
        layers.append(nn.Linear(d, n_labels))
        self.net = nn.Sequential(*layers)
        self.history: list[dict] = []

    def _x(self, tokens: np.ndarray, values: np.ndarray | None = None) -> torch.Tensor:
        return rank_weighted_multi_hot(tokens, self.vocab_size, self.top_n,
                                       values if self.weights == "probability" else None)

    def fit(self, tokens: np.ndarray, labels: np.ndarray, val_tokens: np.ndarray | None = None,
            val_labels: np.ndarray | None = None, epochs: int = 12, batch_size: int = 256, lr: float = 1e-3,
            weight_decay: float = 1e-4, log=None, values: np.ndarray | None = None,
            val_values: np.ndarray | None = None) -> MLPBaseline:
        rng = np.random.default_rng(self.seed)
        y = torch.from_numpy(np.asarray(labels, np.int64))
        opt = torch.optim.AdamW(self.net.parameters(), lr=lr, weight_decay=weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
        best = (-1.0, None)
        for epoch in range(epochs):
            self.net.train()
            order = rng.permutation(len(tokens))
            total = 0.0
            for i in range(0, len(order), batch_size):
                b = order[i:i + batch_size]
                loss = F.cross_entropy(self.net(self._x(tokens[b], None if values is None else values[b])), y[b])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(b)
            sched.step()
            rec = {"epoch": epoch + 1, "loss": total / len(order)}
            if val_tokens is not None:
                rec["val_accuracy"] = float((self.predict(val_tokens, val_values) == np.asarray(val_labels)).mean())
                if rec["val_accuracy"] > best[0]:
                    best = (rec["val_accuracy"], {k: v.clone() for k, v in self.net.state_dict().items()})
            self.history.append(rec)
            if log:
                log(f"MLP epoch {epoch + 1}/{epochs}: " + ", ".join(f"{k} {v:.3f}" for k, v in rec.items() if k != "epoch"))
        if best[1] is not None:
            self.net.load_state_dict(best[1])
        self.net.eval()
        return self

    @torch.inference_mode()
    def predict_proba(self, tokens: np.ndarray, values: np.ndarray | None = None, batch_size: int = 4096) -> np.ndarray:
        self.net.eval()
        out = [torch.softmax(self.net(self._x(tokens[i:i + batch_size],
                                              None if values is None else values[i:i + batch_size])), 1)
               for i in range(0, len(tokens), batch_size)]
        return torch.cat(out).numpy() if out else np.zeros((0, self.n_labels), np.float32)

    def predict(self, tokens: np.ndarray, values: np.ndarray | None = None) -> np.ndarray:
        return self.predict_proba(tokens, values).argmax(1)


class DominantSpeciesRule:
    """Habitat most often seen with the dominant (first) species in training."""

    def fit(self, tokens: np.ndarray, labels: np.ndarray, vocab_size: int, n_labels: int) -> DominantSpeciesRule:
        labels = np.asarray(labels, np.int64)
        first = tokens[:, 0].astype(np.int64)
        counts = np.zeros((vocab_size, n_labels), np.int64)
        np.add.at(counts, (first, labels), 1)
        self.majority = int(np.bincount(labels, minlength=n_labels).argmax())
        self.table = np.where(counts.sum(1) > 0, counts.argmax(1), self.majority)
        self.table[PAD] = self.majority
        return self

    def predict(self, tokens: np.ndarray) -> np.ndarray:
        return self.table[tokens[:, 0].astype(np.int64)]


class MajorityBaseline:
    def fit(self, labels: np.ndarray, n_labels: int) -> MajorityBaseline:
        self.majority = int(np.bincount(np.asarray(labels, np.int64), minlength=n_labels).argmax())
        return self

    def predict(self, tokens: np.ndarray) -> np.ndarray:
        return np.full(len(tokens), self.majority, np.int64)
