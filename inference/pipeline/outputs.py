"""The registry of per-meta-tile outputs: each names its file, its catalog layer and its rendering.

Later stages (species layers, indicators, habitats, traits, embeddings) add entries here; the run
finaliser mosaics and registers whatever the registry lists.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OutputSpec:
    layer_id: str
    kind: str
    title: str
    description: str
    units: str | None
    colormap: str | None = "viridis"
    resampling: str = "average"
    nodata: float = -1.0
    band: int = 1

    @property
    def file_name(self) -> str:
        return self.layer_id


RICHNESS = OutputSpec(
    layer_id="indicator.richness",
    kind="indicator",
    title="Species richness",
    description=(
        "Expected number of species per 50 m cell predicted by the deep-SDM: the sum over species "
        "of the predicted presence probability (a 100 m2 plot)."
    ),
    units="species",
    colormap="viridis",
)

TRUE_RICHNESS = OutputSpec(
    layer_id="truth.richness",
    kind="truth",
    title="True species richness (generated region)",
    description=(
        "Only on generated regions: the expected number of species per cell under the generator's "
        "true probabilities, to compare with the model's map."
    ),
    units="species",
    colormap="viridis",
)

OUTPUTS: list[OutputSpec] = [RICHNESS, TRUE_RICHNESS]
