"""Turn an area's sums into the report a user reads: Home, Species, Habitats, Indicators, Traits."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backend.reports.aggregate import AreaSums, hist_quantiles
from backend.reports.index import BINS, RunIndex
from inference.grid import CELL_M

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
STATUS_RANK = {"LC": 1, "NT": 2, "VU": 3, "EN": 4, "CR": 5}
THREATENED = ("VU", "EN", "CR")
FLAGS = ("eu_directive", "threatened", "invasive", "endemic", "tree")
TOP = 10
CELL_KM2 = CELL_M * CELL_M / 1e6


@dataclass
class SpeciesTable:
    """Catalog attributes of a run's species, aligned with the index's species order."""

    ids: np.ndarray
    name: list[str]
    family: list[str | None]
    genus: list[str | None]
    iucn: list[str | None]
    eu_directive: np.ndarray
    invasive: np.ndarray
    endemic: np.ndarray
    tree: np.ndarray

    @property
    def threatened(self) -> np.ndarray:
        if not hasattr(self, "_threatened"):
            self._threatened = np.array([s in THREATENED for s in self.iucn], bool)
        return self._threatened

    @classmethod
    def from_rows(cls, species_ids: np.ndarray, rows) -> SpeciesTable:
        by_id = {int(r.id): r for r in rows}
        get = [by_id.get(int(s)) for s in species_ids]
        return cls(
            ids=np.asarray(species_ids, np.int64),
            name=[r.name if r else f"species {s}" for r, s in zip(get, species_ids)],
            family=[r.family if r else None for r in get],
            genus=[r.genus if r else None for r in get],
            iucn=[r.iucn if r else None for r in get],
            eu_directive=np.array([bool(r and r.eu_directive) for r in get]),
            invasive=np.array([bool(r and r.invasive) for r in get]),
            endemic=np.array([bool(r and r.endemic) for r in get]),
            tree=np.array([bool(r and r.tree) for r in get]),
        )


def _num(v: float) -> float | None:
    """JSON-safe float (None for NaN or infinity), rounded to 6 significant digits."""
    v = float(v)
    return None if not np.isfinite(v) else float(f"{v:.6g}")


def _band_stats(i: int, index: RunIndex, sums: AreaSums) -> dict:
    n = int(sums.cont_count[i])
    if not n:
        return {"cells": 0, "mean": None, "min": None, "max": None,
                "quantiles": {f"p{int(q * 100):02d}": None for q in QUANTILES}, "quantile_error": 0.0}
    vmin, vmax = float(sums.cont_min[i]), float(sums.cont_max[i])
    if sums.cont_values is not None:
        qv = np.quantile(sums.cont_values[i].astype(np.float64), QUANTILES)
        err = 0.0
    else:
        lo, hi = float(index.lo[i]), float(index.hi[i])
        qv = hist_quantiles(sums.cont_hist[i], lo, hi, QUANTILES, vmin, vmax)
        err = (hi - lo) / BINS
    return {"cells": n, "mean": _num(sums.cont_sum[i] / n), "min": _num(vmin), "max": _num(vmax),
            "quantiles": {f"p{int(q * 100):02d}": _num(v) for q, v in zip(QUANTILES, qv)},
            "quantile_error": _num(err)}


def _continuous(index: RunIndex, sums: AreaSums) -> tuple[list[dict], list[dict], dict | None]:
    """Indicator and trait entries (each primary band with its uncertainty band) and the habitat class
    probability."""
    bands = index.continuous
    by_file = {}
    for i, b in enumerate(bands):
        by_file.setdefault(b["path"], []).append(i)
    indicators, traits, class_prob = [], [], None
    for i, b in enumerate(bands):
        if b["kind"].endswith("-uncertainty"):
            continue
        entry = {"id": b["layer_id"], "title": b["title"], "units": b["units"], "kind": b["kind"],
                 **_band_stats(i, index, sums)}
        partner = [j for j in by_file[b["path"]] if bands[j]["kind"] == f"{b['kind']}-uncertainty"]
        if b["kind"] == "habitat-probability":
            class_prob = entry
        elif b["kind"] == "trait":
            j = partner[0] if partner else None
            entry["spread_layer"] = bands[j]["layer_id"] if j is not None else None
            entry["spread_mean"] = (_num(sums.cont_sum[j] / sums.cont_count[j])
                                    if j is not None and sums.cont_count[j] else None)
            traits.append(entry)
        else:
            j = partner[0] if partner else None
            entry["ci_layer"] = bands[j]["layer_id"] if j is not None else None
            entry["ci_mean"] = (_num(sums.cont_sum[j] / sums.cont_count[j])
                                if j is not None and sums.cont_count[j] else None)
            indicators.append(entry)
    return indicators, traits, class_prob


def _categorical(index: RunIndex, sums: AreaSums) -> dict[str, dict]:
    """Per categorical layer: the classes present with their cells and coverage, most cells first."""
    out = {}
    for k, b in enumerate(index.categorical):
        counts = sums.cat_counts[k]
        items = {int(it["value"]): it for it in b["legend"].get("items", [])}
        nodata = b["nodata"]
        classes = []
        for v in np.flatnonzero(counts):
            if nodata is not None and v == nodata:
                continue
            it = items.get(int(v), {})
            classes.append({"value": int(v), "code": it.get("code"), "label": it.get("label", str(v)),
                            "color": it.get("color"), "cells": int(counts[v]),
                            "coverage": _num(counts[v] / sums.n_cells)})
        classes.sort(key=lambda c: (-c["cells"], c["value"]))
        missing = int(counts[nodata]) if nodata is not None else 0
        out[b["layer_id"]] = {"title": b["title"], "classes": classes, "unclassified_cells": missing}
    return out


def species_items(table: SpeciesTable, sums: AreaSums, scale: float) -> list[dict]:
    """Every species present in some cell of the area, by decreasing coverage (then probability, name)."""
    present = np.flatnonzero(sums.sp_cells)
    cells, codes = sums.sp_cells[present], sums.sp_codes[present]
    names = [table.name[k] for k in present]
    name_rank = np.argsort(np.argsort(np.array(names, dtype=object)))
    order = np.lexsort((name_rank, -codes, -cells))
    present, cells = present[order], cells[order]
    coverage = [float(f"{v:.6g}") for v in (cells / max(sums.n_cells, 1)).tolist()]
    mean_p = [float(f"{v:.6g}") for v in (codes[order] / cells / scale).tolist()]
    threatened = table.threatened
    out = []
    for i, k in enumerate(present.tolist()):
        sid = int(table.ids[k])
        out.append({
            "id": sid, "name": table.name[k], "family": table.family[k], "genus": table.genus[k],
            "iucn": table.iucn[k], "eu_directive": bool(table.eu_directive[k]), "threatened": bool(threatened[k]),
            "invasive": bool(table.invasive[k]), "endemic": bool(table.endemic[k]), "tree": bool(table.tree[k]),
            "cells": int(cells[i]), "coverage": coverage[i], "mean_probability": mean_p[i],
            "layers": [f"species.{sid}", f"species.{sid}.presence"],
        })
    return out


def _conservation_key(s: dict) -> tuple:
    return (-STATUS_RANK.get(s["iucn"] or "", 0), -s["eu_directive"], -s["endemic"], -s["cells"], s["name"])


def _is_relevant(s: dict) -> bool:
    return STATUS_RANK.get(s["iucn"] or "", 0) >= STATUS_RANK["NT"] or s["eu_directive"] or s["endemic"]


def build_report(index: RunIndex, table: SpeciesTable, sums: AreaSums, area_km2: float) -> dict:
    """The report's modules from the area's sums (the caller adds id, run, geometry and timing)."""
    species = species_items(table, sums, index.code_scale)
    indicators, traits, class_prob = _continuous(index, sums)
    categorical = _categorical(index, sums)
    levels = {}
    for level in (1, 2, 3):
        layer = categorical.pop(f"habitat.l{level}", None)
        if layer is not None:
            levels[str(level)] = [{"code": c["code"], "name": c["label"], "value": c["value"], "color": c["color"],
                                   "cells": c["cells"], "coverage": c["coverage"]} for c in layer["classes"]]
            levels[f"unclassified_{level}"] = layer["unclassified_cells"]
    status = categorical.pop("indicator.status.most", None)
    counts = {flag: sum(1 for s in species if s[flag]) for flag in FLAGS}
    by_id = {e["id"]: e for e in indicators}
    scores = {e["id"].removeprefix("indicator."): {"mean": e["mean"], "ci_mean": e.get("ci_mean"), "units": e["units"]}
              for e in indicators if e["kind"] == "indicator" and e.get("ci_layer")}
    habitats = {
        "levels": {lvl: levels.get(lvl, []) for lvl in ("1", "2", "3")},
        "unclassified_cells": {lvl: levels.get(f"unclassified_{lvl}", 0) for lvl in ("1", "2", "3")},
        "class_probability": class_prob,
    }
    home = {
        "species_present": len(species),
        "counts": counts,
        "most_common": [_brief(s) for s in species[:TOP]],
        "most_relevant": [_brief(s) for s in sorted(filter(_is_relevant, species), key=_conservation_key)[:TOP]],
        "dominant_habitats": {lvl: habitats["levels"][lvl][:5] for lvl in ("1", "3")},
        "scores": {**scores, "mean_species_per_cell": scores.get("richness", {}).get("mean"),
                   "species_in_area": len(species)},
        "most_threatened_status": status["classes"][0] if status and status["classes"] else None,
    }
    if "indicator.richness" in by_id:
        home["scores"]["richness_quantiles"] = by_id["indicator.richness"]["quantiles"]
    return {
        "area": {"km2": _num(area_km2), "cells": sums.n_cells, "cells_km2": _num(sums.n_cells * CELL_KM2),
                 "mapped_share": _num(min(1.0, sums.n_cells * CELL_KM2 / area_km2)) if area_km2 else None,
                 "cells_with_assemblage": sums.n_assemblage, "metatiles": sums.tiles},
        "threshold": index.meta["threshold"],
        "home": home,
        "species": {"total": len(species), "items": species},
        "habitats": habitats,
        "indicators": {"items": indicators,
                       "most_threatened_status": status["classes"] if status else [],
                       "quantiles": "exact" if sums.cont_values is not None else
                       f"from {BINS}-bin histograms over each layer's run-wide range (error at most quantile_error)"},
        "traits": {"items": traits},
        "other_layers": categorical,
    }


def _brief(s: dict) -> dict:
    return {k: s[k] for k in ("id", "name", "iucn", "eu_directive", "invasive", "endemic", "coverage",
                              "mean_probability")}
