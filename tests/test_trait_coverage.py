"""A trait table with gaps: each trait map rests on the species with a value, and the run says how
much of the assemblage's weight that is (per meta-tile in the manifest, per run in the trait
layers' descriptions)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from inference.grid import MetaTile
from inference.pipeline.outputs import TRAIT_COVERAGE, TRAIT_OUTPUTS

TILE = MetaTile(4200000, 2800000)


def test_trait_coverage_is_the_share_of_the_assemblage_weight_with_a_value(tiny_region, tiny_sdm, monkeypatch):
    from inference.data.region import GeneratedRegion, load_region
    from inference.pipeline.stages import compute_metatile, models_for, run_profile

    region = load_region(tiny_region)
    models = models_for({"sdm": tiny_sdm}, "cpu")
    profile = run_profile(region, models, n_cells=300)
    table = region.species
    gap = {table[0].id, table[3].id}  # these two have no known height
    holed = [dataclasses.replace(s, traits={**s.traits, "Height": dataclasses.replace(s.traits["Height"],
                                                                                        median=float("nan"))})
             if s.id in gap else s for s in table]
    monkeypatch.setattr(GeneratedRegion, "species", property(lambda self: holed))
    out = compute_metatile(region, TILE, models, profile)
    prob = models.sdm.probabilities(region, TILE).numpy()
    w = np.where(prob >= profile.threshold, prob, 0.0)
    ids = list(models.species_ids)
    known = np.array([ids[i] not in gap for i in range(len(ids))])
    total = w.sum(0)
    share = w[known].sum(0)[total > 0] / total[total > 0]
    assert out[TRAIT_COVERAGE]["Height"] == pytest.approx(share.mean(), rel=1e-4)
    assert out[TRAIT_COVERAGE]["Height"] < 0.999 and out[TRAIT_COVERAGE]["SLA"] == pytest.approx(1.0)
    assert np.isfinite(out["trait.height"]).all()


def test_trait_layers_say_how_much_their_values_cover(tmp_path):
    from backend.core.atomic import write_json
    from backend.jobs.runs import _description, trait_coverage
    from tests.conftest import make_settings

    settings = make_settings(tmp_path)
    for tile, cov in (("E4200N2800", 0.8), ("E4225N2800", 0.9)):
        write_json(settings.layout.manifest("r1", tile), {"trait_coverage": {"Height": cov, "SLA": 1.0}})
    cov = trait_coverage(settings, "r1", ["E4200N2800", "E4225N2800"])
    assert cov == pytest.approx({"Height": 0.85, "SLA": 1.0})
    height, sla = (next(s for s in TRAIT_OUTPUTS if s.layer_id == i) for i in ("trait.height", "trait.sla"))
    assert _description(height, cov).endswith("carry 85.0% of the assemblage's weight (mean over the run's "
                                               "cells): the others are left out of the mean.")
    assert _description(sla, cov) == sla.description
