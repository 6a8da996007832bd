"""Probability calibration of the deep-SDM, for indicators that add probabilities up.

Training with a positive weight per species (``pos_weight``) ranks cells well but inflates the
probabilities: summed over species they overstate richness about two-fold. Indicator means
(sum p) and variances (sum p (1 - p)) need probabilities that mean what they say, so after
training GeoFlora fits, on the calibration split only,

    q_s(x) = sigmoid(a * z_s(x) + b + c_s)

where ``z`` are the trained logits, ``a``, ``b`` are shared (Platt scaling) and ``c_s`` is a
per-species offset shrunk towards 0 by a ridge penalty (rare species have few calibration
presences and keep the shared mapping). ``q`` is the probability of the species in a standard
100 m2 plot. A survey of area A (``areaInM2``) records a species with 1 - (1 - q)^(A / 100), the
same sampling law the surveys follow, so the fit uses each survey's own area.

The mapping is affine in the logits, so it folds into the SDM's last linear layer: a calibrated
model costs nothing more at inference and per-species rankings (AUC) do not change.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch.nn import functional as F

STANDARD_PLOT_M2 = 100.0


@dataclass
class Calibration:
    scale: float
    bias: float
    species_bias: list[float]
    ridge: float
    nll_before: float
    nll_after: float

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def identity(cls, n_species: int) -> Calibration:
        return cls(1.0, 0.0, [0.0] * n_species, 0.0, float("nan"), float("nan"))

    def apply_logits(self, logits: np.ndarray | torch.Tensor):
        c = np.asarray(self.species_bias, np.float32)
        if isinstance(logits, torch.Tensor):
            return logits * self.scale + self.bias + torch.as_tensor(c, device=logits.device)
        return logits * self.scale + self.bias + c

    @torch.no_grad()
    def fold_into(self, head: torch.nn.Linear) -> None:
        """Make ``head`` output calibrated logits (in place)."""
        c = torch.as_tensor(self.species_bias, dtype=head.bias.dtype, device=head.bias.device)
        head.weight.mul_(self.scale)
        head.bias.mul_(self.scale).add_(self.bias + c)


def _survey_nll(logits: torch.Tensor, y: torch.Tensor, exponent: torch.Tensor) -> torch.Tensor:
    """Mean NLL of labels under P(recorded) = 1 - (1 - q)^exponent, q = sigmoid(logits)."""
    log_absent = -F.softplus(logits) * exponent  # log (1 - q)^e
    log_present = torch.log(-torch.expm1(log_absent).clamp_max(-1e-12))
    return -(y * log_present + (1 - y) * log_absent).mean()


def plot_exponent(area_m2: np.ndarray | None, n: int) -> np.ndarray:
    """A / 100 per survey; a missing or non-positive area counts as a standard plot."""
    if area_m2 is None:
        return np.ones(n, np.float32)
    a = np.asarray(area_m2, np.float64)
    a = np.where(np.isfinite(a) & (a > 0), a, STANDARD_PLOT_M2)
    return (a / STANDARD_PLOT_M2).astype(np.float32)


def fit_calibration(logits: np.ndarray, labels: np.ndarray, area_m2: np.ndarray | None = None,
                    ridge: float = 1.0, max_iter: int = 300) -> Calibration:
    """Fit shared Platt scaling plus ridge-shrunk per-species offsets by maximum likelihood.

    ``logits`` [N, S] from the trained model on calibration surveys, ``labels`` bool [N, S],
    ``area_m2`` [N] the surveys' areas. ``ridge`` is the penalty on the offsets per survey-sum of
    the NLL (larger: species stay closer to the shared mapping).
    """
    if logits.shape != labels.shape or logits.ndim != 2:
        raise ValueError(f"logits {logits.shape} and labels {labels.shape} must be the same [N, S] shape")
    n, s = logits.shape
    if n == 0:
        raise ValueError("no calibration surveys")
    z = torch.as_tensor(logits, dtype=torch.float64)
    y = torch.as_tensor(labels, dtype=torch.float64)
    e = torch.as_tensor(plot_exponent(area_m2, n), dtype=torch.float64)[:, None]
    a = torch.ones((), dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    c = torch.zeros(s, dtype=torch.float64, requires_grad=True)
    with torch.no_grad():
        before = float(_survey_nll(z, y, e))
    opt = torch.optim.LBFGS([a, b, c], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = _survey_nll(a * z + b + c, y, e) + ridge * (c ** 2).sum() / (n * s)
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        after = float(_survey_nll(a * z + b + c, y, e))
    if not np.isfinite(after) or after > before:  # never make things worse
        return Calibration(1.0, 0.0, [0.0] * s, ridge, before, before)
    return Calibration(float(a.detach()), float(b.detach()), c.detach().tolist(), ridge, before, after)
