"""The seven biodiversity indicators, with uncertainty, as batched tensor operations.

Input: calibrated presence probabilities ``p`` [S, ...cells] (species first, any cell shape, CPU
or CUDA) and per-species attributes. The **assemblage** of a cell is the set of species whose
probability reaches the conformal threshold ``t`` (the SDM's calibrated bound on the chance of
omitting a truly present species); species below it count as absent.

For a species set S (all species, EU directive, threatened, trees, invasive, specialists) and its
members in the assemblage, treating presences as independent Bernoulli variables:

    mean = sum p_i,   variance = sum p_i (1 - p_i),   half-width = 2 sqrt(variance)

For each IUCN status s the probability that at least one species of status s is present is
1 - prod (1 - p_i) over the assemblage's species of that status; the most threatened status of a
cell is the highest rank (CR > EN > VU > NT > LC) among its assemblage, by a look-up table and a
max. Species without an assessment (DD, NE or missing) count in richness but in no status.

**Specialist species** (defined from the data, see :func:`specialist_mask`): species whose
predicted assemblage membership is confined to a small share of the region (at most
``max_share`` of the cells, 10 % by default) while their median probability over the region is
very low (below a tenth of the threshold): species that are predicted with very low probability
almost everywhere except in a few places. The flags are computed once per run from a region-wide
sample of cells, so every meta-tile uses the same list.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

# IUCN categories by rank; 0 = no assessed species in the assemblage.
STATUS_RANK = {"LC": 1, "NT": 2, "VU": 3, "EN": 4, "CR": 5}
STATUS_NAMES = {0: "none assessed", 1: "Least Concern (LC)", 2: "Near Threatened (NT)", 3: "Vulnerable (VU)",
                4: "Endangered (EN)", 5: "Critically Endangered (CR)"}
# Data deficient, not evaluated, and (regionally) extinct or extinct in the wild: no rank on the
# LC..CR scale of a present assemblage (a Red List names them; the maps do not rank them).
UNRANKED = ("DD", "NE", "EX", "EW", "RE")
THREATENED = ("VU", "EN", "CR")
PROBABILITY_STATUSES = ("NT", "VU", "EN", "CR")
COUNT_INDICATORS = ("richness", "eu_directive", "threatened", "trees", "invasive", "specialists")
STATUS_NODATA = 255


@dataclass
class SpeciesAttributes:
    """Per-species attributes the indicators need, in the SDM's species order."""

    iucn: list[str | None]
    eu_directive: np.ndarray
    invasive: np.ndarray
    tree: np.ndarray
    specialist: np.ndarray = field(default=None)

    def __post_init__(self) -> None:
        n = len(self.iucn)
        self.eu_directive = np.asarray(self.eu_directive, bool)
        self.invasive = np.asarray(self.invasive, bool)
        self.tree = np.asarray(self.tree, bool)
        self.specialist = np.zeros(n, bool) if self.specialist is None else np.asarray(self.specialist, bool)
        for name in ("eu_directive", "invasive", "tree", "specialist"):
            if getattr(self, name).shape != (n,):
                raise ValueError(f"species attribute {name!r} has {getattr(self, name).shape[0]} entries, "
                                 f"expected one per species ({n})")
        unknown = {s for s in self.iucn if s and s.upper() not in STATUS_RANK and s.upper() not in UNRANKED}
        if unknown:
            raise ValueError(f"unknown IUCN categories {sorted(unknown)}: use LC, NT, VU, EN, CR, DD, NE, EX, EW, RE or empty")

    @classmethod
    def from_species(cls, species, specialist: np.ndarray | None = None) -> SpeciesAttributes:
        return cls(iucn=[s.iucn for s in species], eu_directive=[s.eu_directive for s in species],
                   invasive=[s.invasive for s in species], tree=[s.tree for s in species], specialist=specialist)

    @property
    def rank(self) -> np.ndarray:
        """IUCN rank per species (0 for not assessed)."""
        return np.array([STATUS_RANK.get((s or "").upper(), 0) for s in self.iucn], np.int64)

    def masks(self) -> dict[str, np.ndarray]:
        """Species-set membership [S] per count indicator."""
        rank = self.rank
        return {
            "richness": np.ones(len(rank), bool),
            "eu_directive": self.eu_directive,
            "threatened": rank >= STATUS_RANK["VU"],
            "trees": self.tree,
            "invasive": self.invasive,
            "specialists": self.specialist,
        }


def specialist_mask(prob_sample: np.ndarray, threshold: float, max_share: float = 0.10,
                    low_factor: float = 0.1) -> np.ndarray:
    """Specialists from predictions at a region-wide sample of cells ``prob_sample`` [N, S].

    A species is a specialist when it is in the assemblage (p >= threshold) somewhere, in at most
    ``max_share`` of the sampled cells, and its median probability is below
    ``low_factor * threshold`` (very low probability elsewhere).
    """
    if prob_sample.ndim != 2 or prob_sample.shape[0] == 0:
        raise ValueError("specialist flags need predictions at a non-empty sample of cells [N, S]")
    present = prob_sample >= threshold
    share = present.mean(0)
    median = np.median(prob_sample, axis=0)
    return (share > 0) & (share <= max_share) & (median < low_factor * threshold)


@torch.no_grad()
def compute_indicators(prob: torch.Tensor, attrs: SpeciesAttributes, threshold: float | torch.Tensor | None,
                       chunk: int = 512) -> dict[str, torch.Tensor]:
    """Every indicator of every cell.

    ``prob`` [S, *cells] float (probabilities); ``threshold`` a scalar or per-species [S] tensor
    (None: every species counts). Returns, on ``prob``'s device, float32 tensors of cell shape:
    ``{name}.mean`` and ``{name}.halfwidth`` for each count indicator, ``status.p_{nt,vu,en,cr}``
    and ``status.most`` (uint8 rank, 0 where no assessed species is in the assemblage). Species are
    processed in chunks of ``chunk`` so memory stays at a few cell-sized buffers.
    """
    if prob.ndim < 2:
        raise ValueError(f"probabilities must be [species, cells...], got shape {tuple(prob.shape)}")
    n_species = prob.shape[0]
    if len(attrs.iucn) != n_species:
        raise ValueError(f"{len(attrs.iucn)} species attributes for {n_species} species probabilities")
    dev = prob.device
    cell_shape = prob.shape[1:]
    masks = attrs.masks()
    # Species -> indicator membership matrix [S, K]; sums over species become one matmul per chunk.
    member = torch.as_tensor(np.stack([masks[k] for k in COUNT_INDICATORS], 1), dtype=torch.float32, device=dev)
    rank = torch.as_tensor(attrs.rank, device=dev)
    rank_np = attrs.rank
    if threshold is not None:
        thr = torch.as_tensor(threshold, dtype=torch.float32, device=dev)
        if thr.ndim == 1 and thr.shape[0] != n_species:
            raise ValueError(f"{thr.shape[0]} thresholds for {n_species} species")
    k = len(COUNT_INDICATORS)
    n_cells = int(np.prod(cell_shape))
    mean = torch.zeros(k, n_cells, dtype=torch.float64, device=dev)
    var = torch.zeros(k, n_cells, dtype=torch.float64, device=dev)
    log_none = torch.zeros(len(PROBABILITY_STATUSES), n_cells, dtype=torch.float64, device=dev)
    most = torch.zeros(n_cells, dtype=torch.int64, device=dev)
    for s0 in range(0, n_species, chunk):
        p = prob[s0:s0 + chunk].reshape(-1, n_cells).float()
        if threshold is not None:
            t = thr if thr.ndim == 0 else thr[s0:s0 + chunk, None]
            inside = p >= t
            p = torch.where(inside, p, torch.zeros((), device=dev))
        else:
            inside = p > 0
        m = member[s0:s0 + chunk]
        mean += (m.T @ p).double()
        var += (m.T @ (p * (1 - p))).double()
        # log prod (1 - p) per status; p == 1 gives -inf (certainly present), as it should, so
        # select with where (0 * -inf would be NaN in a matmul).
        lp = torch.log1p(-p.clamp(max=1.0))
        for i, status in enumerate(PROBABILITY_STATUSES):
            sel = np.flatnonzero(rank_np[s0:s0 + chunk] == STATUS_RANK[status])  # host-side: no device sync
            if sel.size:
                log_none[i] += lp[torch.as_tensor(sel, device=dev)].sum(0, dtype=torch.float64)
        r = torch.where(inside, rank[s0:s0 + chunk, None], torch.zeros((), dtype=torch.int64, device=dev))
        most = torch.maximum(most, r.amax(0))
    out: dict[str, torch.Tensor] = {}
    for i, name in enumerate(COUNT_INDICATORS):
        out[f"{name}.mean"] = mean[i].float().reshape(cell_shape)
        out[f"{name}.halfwidth"] = (2 * var[i].clamp_min(0).sqrt()).float().reshape(cell_shape)
    for i, s in enumerate(PROBABILITY_STATUSES):
        out[f"status.p_{s.lower()}"] = (-torch.expm1(log_none[i]) + 0.0).float().reshape(cell_shape)  # no -0.0
    out["status.most"] = most.to(torch.uint8).reshape(cell_shape)
    return out
