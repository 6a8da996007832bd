"""The whole cascade on a CUDA GPU gives the CPU's layers (bfloat16 autocast: within tolerance).

Skipped where there is no GPU (the development machine and CI); run it on a GPU machine with
``.venv/bin/python -m pytest tests/test_cuda_cascade.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def test_cascade_on_cuda_matches_cpu(tiny_region, tiny_sdm, tiny_botaclip, tiny_plantbert):
    from inference.data.region import load_region
    from inference.pipeline.stages import compute_metatile, models_for, run_profile

    region = load_region(tiny_region)
    tile = next(region.grid.metatiles())
    out = {}
    for device in ("cpu", "cuda"):
        models = models_for({"sdm": tiny_sdm, "plantbert": tiny_plantbert, "botaclip": tiny_botaclip}, device)
        profile = run_profile(region, models, n_cells=300, habitat_step=1)
        out[device] = compute_metatile(region, tile, models, profile, n_rows=100)
    cpu, gpu = out["cpu"], out["cuda"]
    assert set(cpu) == set(gpu)
    # bfloat16 SDM: probabilities within 0.02 (codes p x 250 within 5)
    codes = np.abs(cpu["species.codes"].astype(int) - gpu["species.codes"].astype(int))
    assert np.percentile(codes, 99) <= 5
    rich, rich_gpu = cpu["indicator.richness"], gpu["indicator.richness"]
    assert np.abs(rich - rich_gpu).mean() < 0.05 * max(rich.mean(), 1.0)
    # habitats: the same level-3 class on nearly every cell; embeddings: the same colours
    assert (cpu["habitat.l3"] == gpu["habitat.l3"]).mean() > 0.95
    assert np.abs(cpu["embedding.pca"].astype(int) - gpu["embedding.pca"].astype(int)).mean() < 4
    trait = "trait." + next(k.split(".")[1] for k in cpu if k.startswith("trait."))
    both = (cpu[trait] > 0) & (gpu[trait] > 0)
    assert np.allclose(cpu[trait][both], gpu[trait][both], rtol=0.05)
