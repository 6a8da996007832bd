"""The registry of per-meta-tile outputs: each names its catalog layer, its file and band, and its
rendering.

Several layers may share one file as its bands (an indicator's mean and 2-sigma half-width; the
status probabilities), as ../shared/DESIGN.md asks. The run writes one COG per file and meta-tile
and registers one catalog layer per band.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from inference.data import eunis
from inference.indicators import PROBABILITY_STATUSES, STATUS_NAMES, STATUS_NODATA
from tiles.colormaps import categorical_legend, eunis_color, hex_color


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
    file: str | None = None  # default: the layer id
    band: int = 1
    dtype: str = "float32"
    rescale: tuple[float, float] | None = None  # fixed; None: 0 to a rounded region-wide 99th percentile
    legend: dict | None = None  # fixed legend (categorical layers)
    colortable: dict | None = None  # value -> RGBA written into the COG (categorical layers, band 1)

    @property
    def file_name(self) -> str:
        return self.file or self.layer_id


def _indicator(name: str, title: str, what: str) -> list[OutputSpec]:
    """Mean and 2-sigma layers of a count indicator, bands 1 and 2 of ``indicator.{name}``."""
    file = f"indicator.{name}"
    how = ("the sum over the cell's assemblage (species at or above the conformal threshold) of their "
           "calibrated probabilities of presence in a 100 m2 plot")
    return [
        OutputSpec(layer_id=file, kind="indicator", title=title, file=file, band=1, units="species",
                   description=f"Expected number of {what} per 50 m cell: {how}."),
        OutputSpec(layer_id=f"{file}.ci", kind="indicator-uncertainty", title=f"{title}: 2-sigma half-width",
                   file=file, band=2, units="species", colormap="magma",
                   description=(f"Uncertainty of the {title.lower()} map: two standard deviations, "
                                f"2 sqrt(sum p (1 - p)) over the same species (presences as independent "
                                f"Bernoulli variables). Mean +/- this value is a ~95 % interval.")),
    ]


STATUS_LEGEND = categorical_legend("iucn", STATUS_NAMES)

INDICATORS: list[OutputSpec] = [
    *_indicator("richness", "Species richness", "plant species"),
    *_indicator("eu_directive", "EU directive species", "species listed in the EU Habitats Directive annexes"),
    *_indicator("threatened", "Threatened species", "IUCN threatened species (VU, EN or CR)"),
    *_indicator("trees", "Tree species", "tree species"),
    *_indicator("invasive", "Invasive species", "invasive alien species (EU list of Union concern)"),
    *_indicator("specialists", "Specialist species",
                "specialist species (in the assemblage of at most 10 % of the region's cells and with a "
                "median probability below a tenth of the threshold elsewhere)"),
    OutputSpec(layer_id="indicator.status.most", kind="indicator", title="Most threatened IUCN status",
               description=("The highest IUCN Red List category among the species of the cell's assemblage "
                            "(CR > EN > VU > NT > LC; grey: no assessed species)."),
               units=None, colormap="iucn", resampling="nearest", nodata=STATUS_NODATA, dtype="uint8",
               legend=STATUS_LEGEND),
    *[OutputSpec(layer_id=f"indicator.status.p_{s.lower()}", kind="indicator",
                 title=f"Probability of at least one {s} species",
                 description=(f"1 - prod(1 - p) over the assemblage's species with IUCN status {s}: the "
                              f"probability that at least one of them is present."),
                 units="probability", colormap="inferno", file="indicator.status",
                 band=i + 1, rescale=(0.0, 1.0))
      for i, s in enumerate(PROBABILITY_STATUSES)],
]

RICHNESS = INDICATORS[0]

TRAIT_TITLES = {"Height": ("Plant height", "m"), "LeafArea": ("Leaf area", "mm2"),
                "SLA": ("Specific leaf area", "mm2 mg-1"), "Leaf_N": ("Leaf nitrogen", "mg g-1")}


def _trait(name: str) -> list[OutputSpec]:
    title, units = TRAIT_TITLES[name]
    file = f"trait.{name.lower()}"
    return [
        OutputSpec(layer_id=file, kind="trait", title=f"{title} (community-weighted mean)", file=file, band=1,
                   units=units, colormap="viridis",
                   description=(f"Community-weighted geometric mean of species' median {title.lower()}: exp of the "
                                f"mean of log species medians weighted by their calibrated probabilities, over the "
                                f"cell's assemblage (species at or above the conformal threshold).")),
        OutputSpec(layer_id=f"{file}.sd", kind="trait-uncertainty", title=f"{title}: community spread (sd of log)",
                   file=file, band=2, units="ln units", colormap="magma",
                   description=(f"Weighted standard deviation of the log species medians of {title.lower()} in the "
                                f"assemblage: 0.1 means species differ by about 10 % around the mean.")),
    ]


TRAIT_OUTPUTS: list[OutputSpec] = [spec for name in TRAIT_TITLES for spec in _trait(name)]

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

OUTPUTS: list[OutputSpec] = [*INDICATORS, *TRAIT_OUTPUTS, TRUE_RICHNESS]

# Habitat suitability keeps, per cell, the probabilities of Pl@ntBERT's most probable level-3
# classes (a habitat outside them shows 0 there: its probability is below the k-th one).
HABITAT_TOP_K = 3
SUITABILITY_FILE = "habitat.suitability"


def suitability_layer_id(code: str) -> str:
    return f"{SUITABILITY_FILE}.{code}"


def habitat_outputs(labels: list[str]) -> list[OutputSpec]:
    """Pl@ntBERT layers for a model whose level-3 classes are ``labels``: the class at levels 3, 2
    and 1 (value = 1 + index into the sorted codes of that level; 0 = no assemblage) with a colour
    table and a legend naming each code, the level-3 class probability, and one suitability layer
    per level-3 class (bands of one file, ``labels`` order: the class's probability where it is
    among the cell's ``HABITAT_TOP_K`` most probable, else 0)."""
    out = []
    for level in (3, 2, 1):
        codes = sorted({eunis.at_level(c, level) for c in labels})
        if len(codes) > 254:
            raise ValueError(f"{len(codes)} level-{level} habitat classes: at most 254 fit a uint8 layer")
        table = {0: (0, 0, 0, 0), **{i + 1: eunis_color(c) for i, c in enumerate(codes)}}
        legend = {"type": "categorical", "items": [
            {"value": i + 1, "label": f"{c} {_habitat_name(c)}".strip(), "code": c, "color": hex_color(table[i + 1])}
            for i, c in enumerate(codes)]}
        out.append(OutputSpec(
            layer_id=f"habitat.l{level}", kind="habitat", title=f"EUNIS habitat, level {level} (Pl@ntBERT)",
            description=(f"The EUNIS level-{level} habitat of each 50 m cell: Pl@ntBERT's level-3 class from the "
                         f"cell's assemblage (species in decreasing probability), "
                         + ("" if level == 3 else f"taken to level {level} by the code hierarchy, ")
                         + "colour table by habitat group."),
            units=None, colormap=None, resampling="nearest", nodata=0, dtype="uint8", legend=legend,
            colortable=table))
    out.append(OutputSpec(
        layer_id="habitat.l3.probability", kind="habitat-probability", title="EUNIS habitat: class probability",
        description="Pl@ntBERT's softmax probability of the level-3 class shown in habitat.l3 (0: no assemblage).",
        units="probability", colormap="cividis", rescale=(0.0, 1.0)))
    for band, code in enumerate(labels, start=1):
        name = _habitat_name(code)
        out.append(OutputSpec(
            layer_id=suitability_layer_id(code), kind="habitat-suitability",
            title=f"Suitability: {code} {name}".strip(), file=SUITABILITY_FILE, band=band,
            description=(f"Pl@ntBERT's probability that the 50 m cell's assemblage belongs to EUNIS habitat {code}"
                         + (f" ({name})" if name else "") + f", where {code} is among the cell's {HABITAT_TOP_K} "
                         f"most probable level-3 habitats; 0 where it is not (there its probability is lower than "
                         f"those of the {HABITAT_TOP_K} most probable)."),
            units="probability", colormap="viridis", rescale=(0.0, 1.0)))
    return out


def _habitat_name(code: str) -> str:
    try:
        return eunis.habitat(code).name
    except KeyError:
        return ""


# One layer, three bands (an RGB image: the array is [3, rows, cols]); 0 is nodata, colours 1..255.
EMBEDDING_RGB = OutputSpec(
    layer_id="embedding.pca", kind="embedding", title="BotaCLIP embedding (first three principal components)",
    description=("Botanical embedding of each cell's Sentinel-2 patch (BotaCLIP): its first three principal "
                 "components, fitted region-wide, as red, green and blue. Similar colours, similar "
                 "vegetation as seen from space."),
    units=None, colormap=None, nodata=0, dtype="uint8", resampling="average",
    legend={"type": "rgb", "bands": ["PC1 (red)", "PC2 (green)", "PC3 (blue)"]})


# Species layers are not in OUTPUTS: their number varies by meta-tile (only species in the
# assemblage of some cell are written), so the run writes them from these two arrays.
SPECIES_CODES = "species.codes"  # uint8 [S, rows, cols]: probability x 250
SPECIES_PRESENT = "species.present"  # bool [S]: in the assemblage of at least one cell
TRAIT_COVERAGE = "trait.coverage"  # {trait: mean share of the assemblage weight with a known value}
ASSEMBLAGES = "assemblages"  # AssemblageChunks: the per-cell assemblage store (inference.pipeline.assemblage)


def mask_outputs(out: dict, keep: np.ndarray, specs: list[OutputSpec]) -> None:
    """Set the cells outside ``keep`` ([rows, cols] bool) of every layer of ``out`` that ``specs``
    describe to that layer's nodata (in place)."""
    by_id = {s.layer_id: s for s in specs}
    for key, arr in out.items():
        spec = by_id.get(key)
        if spec is not None and isinstance(arr, np.ndarray):
            arr[..., ~keep] = spec.nodata


def files_of(specs: list[OutputSpec]) -> dict[str, list[OutputSpec]]:
    """Specs grouped by file, bands in order; checks that the bands of a file are 1..n, one dtype."""
    groups: dict[str, list[OutputSpec]] = {}
    for spec in specs:
        groups.setdefault(spec.file_name, []).append(spec)
    for name, group in groups.items():
        group.sort(key=lambda s: s.band)
        if [s.band for s in group] != list(range(1, len(group) + 1)) or len({s.dtype for s in group}) != 1:
            raise ValueError(f"output file {name}: bands must be 1..n with one dtype")
    return groups
