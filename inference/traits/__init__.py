"""Plant traits: PlantTraitNet from geotagged photos, and community-weighted trait maps.

* :mod:`inference.traits.model`: frozen DINOv2 (and optional Depth-Anything-V2) encoders, a
  Climplicit-style SIREN geo encoder, the residual MLP trunk with per-trait mean / log-variance
  heads, Laplace / Gaussian NLL.
* :mod:`inference.traits.data`: PlantTraitNet CSV photos, lognormal label distributions,
  PFT-stratified batches, cached encoder features, spatial splits.
* :mod:`inference.traits.train`: training and the two-step uncertainty-guided cleaning loop
  (``geoflora train traits``).
* :mod:`inference.traits.predictor`: the trained model (:class:`TraitModel`) and its checkpoint
  (:func:`save_traits`, :func:`load_traits`).
* :mod:`inference.traits.maps`: community-weighted means at 50 m (:func:`cwm`) and photo
  predictions aggregated on a grid (:func:`grid_aggregate`).
* :mod:`inference.traits.evaluate`: both kinds of map against a generated region's truth
  (``geoflora evaluate traits``).

Traits (natural-log scale everywhere): Height (m), LeafArea (mm2), SLA (mm2 mg-1), Leaf_N (mg g-1).
"""

from .maps import CWMAccumulator, TraitGrid, cwm, grid_aggregate, photo_map
from .model import LAPLACE_TRAITS, TRAITS, gaussian_nll, laplace_nll, trait_nll

__all__ = ["TRAITS", "LAPLACE_TRAITS", "cwm", "CWMAccumulator", "grid_aggregate", "photo_map", "TraitGrid",
           "gaussian_nll", "laplace_nll", "trait_nll"]
