"""The registry of per-meta-tile outputs: each names its file, its catalog layer and its rendering.

Later stages (SDM species layers, indicators, habitats, traits, embeddings) add entries here; the
run finaliser mosaics and registers whatever the registry lists.
"""

from __future__ import annotations

from dataclasses import dataclass, field


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
    tags: dict = field(default_factory=dict)

    @property
    def file_name(self) -> str:
        return self.layer_id


RICHNESS_PLACEHOLDER = OutputSpec(
    layer_id="indicator.richness",
    kind="indicator",
    title="Species richness (placeholder: expected richness of the generated truth)",
    description=(
        "PLACEHOLDER until the deep-SDM lands: the expected number of species per 50 m cell, "
        "sum over species of the generator's true presence probability. The SDM issue replaces "
        "it with the richness predicted from the model's probabilities."
    ),
    units="species",
    colormap="viridis",
)

OUTPUTS: list[OutputSpec] = [RICHNESS_PLACEHOLDER]
