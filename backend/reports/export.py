"""Report exports (CSV per module, GeoJSON of the area with its summary), paging and filtering of the
species and habitat lists, and the comparison of several areas."""

from __future__ import annotations

import csv
import io

from backend.core.errors import InvalidInput

SPECIES_COLUMNS = ("id", "name", "family", "genus", "iucn", "eu_directive", "threatened", "invasive", "endemic",
                   "tree", "cells", "coverage", "mean_probability")
HABITAT_COLUMNS = ("level", "code", "name", "value", "cells", "coverage")
QUANTILE_KEYS = ("p05", "p25", "p50", "p75", "p95")
MODULES = ("species", "habitats", "indicators", "traits")
SPECIES_SORTS = ("coverage", "mean_probability", "name", "cells")
HABITAT_SORTS = ("coverage", "code", "name")
FLAGS = ("eu_directive", "threatened", "invasive", "endemic", "tree")


def filter_species(report: dict, *, flag: str | None = None, iucn: str | None = None, family: str | None = None,
                   q: str | None = None, sort: str = "coverage", descending: bool = True) -> list[dict]:
    items = report["species"]["items"]
    if flag:
        items = [s for s in items if s[flag]]
    if iucn:
        items = [s for s in items if (s["iucn"] or "") == iucn.upper()]
    if family:
        items = [s for s in items if (s["family"] or "").lower() == family.lower()]
    if q:
        items = [s for s in items if q.lower() in s["name"].lower()]
    if sort != "coverage" or not descending:  # stored by decreasing coverage already
        items = sorted(items, key=_sort_key(sort), reverse=descending)
    return items


def _sort_key(field: str):
    if field in ("name", "code"):
        return lambda row: (row[field] or "").lower()
    return lambda row: -1 if row[field] is None else row[field]


def filter_habitats(report: dict, *, level: int | None = None, min_coverage: float = 0.0, q: str | None = None,
                    sort: str = "coverage", descending: bool = True) -> list[dict]:
    rows = [{"level": int(lvl), **h} for lvl, hs in report["habitats"]["levels"].items() for h in hs
            if level is None or int(lvl) == level]
    rows = [h for h in rows if (h["coverage"] or 0) >= min_coverage]
    if q:
        rows = [h for h in rows if q.lower() in f"{h['code']} {h['name']}".lower()]
    rows.sort(key=_sort_key(sort), reverse=descending)
    rows.sort(key=lambda h: h["level"])  # stable: sorted within each level
    return rows


def trimmed(report: dict, limit: int) -> dict:
    """The report with its species list cut to the first ``limit`` (the rest is paged)."""
    sp = report["species"]
    return {**report, "species": {"total": sp["total"], "offset": 0, "limit": limit, "items": sp["items"][:limit],
                                  "next": f"/api/reports/{report['id']}/species?offset={limit}&limit={limit}"
                                  if sp["total"] > limit else None}}


def _stat_row(e: dict) -> list:
    return [e["id"], e["title"], e["units"], e["cells"], e["mean"], e["min"], e["max"],
            *[e["quantiles"][k] for k in QUANTILE_KEYS], e["quantile_error"]]


def to_csv(report: dict, module: str) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    if module == "species":
        w.writerow(SPECIES_COLUMNS)
        for s in report["species"]["items"]:
            w.writerow([s[c] for c in SPECIES_COLUMNS])
    elif module == "habitats":
        w.writerow(HABITAT_COLUMNS)
        for h in filter_habitats(report):
            w.writerow([h[c] for c in HABITAT_COLUMNS])
    elif module == "indicators":
        w.writerow(["id", "title", "units", "cells", "mean", "min", "max", *QUANTILE_KEYS, "quantile_error",
                    "ci_layer", "ci_mean"])
        for e in report["indicators"]["items"]:
            w.writerow([*_stat_row(e), e.get("ci_layer"), e.get("ci_mean")])
    elif module == "traits":
        w.writerow(["id", "title", "units", "cells", "mean", "min", "max", *QUANTILE_KEYS, "quantile_error",
                    "spread_layer", "spread_mean"])
        for e in report["traits"]["items"]:
            w.writerow([*_stat_row(e), e.get("spread_layer"), e.get("spread_mean")])
    else:
        raise InvalidInput(f"unknown module {module!r}: one of {', '.join(MODULES)}")
    return buf.getvalue()


def summary(report: dict) -> dict:
    """The headline numbers of a report (GeoJSON properties, comparisons)."""
    home = report["home"]
    top3 = home["dominant_habitats"].get("3") or []
    top1 = home["dominant_habitats"].get("1") or []
    return {
        "report": report["id"], "run": report["run"]["id"], "area_km2": report["area"]["km2"],
        "cells": report["area"]["cells"], "species_present": home["species_present"], **{
            f"{k}_species": v for k, v in home["counts"].items()},
        "dominant_habitat_l3": top3[0]["code"] if top3 else None,
        "dominant_habitat_l1": top1[0]["code"] if top1 else None,
        **{f"indicator.{k}": v["mean"] for k, v in home["scores"].items() if isinstance(v, dict) and "mean" in v},
        "most_common_species": [s["name"] for s in home["most_common"][:5]],
    }


def to_geojson(report: dict) -> dict:
    return {"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": report["id"], "geometry": report["geometry"], "properties": summary(report)}]}


def compare(reports: list[dict]) -> dict:
    """Side-by-side numbers of several areas, their shared and unique species, habitat coverages."""
    sets = [{s["id"] for s in r["species"]["items"]} for r in reports]
    names = {s["id"]: s["name"] for r in reports for s in r["species"]["items"]}
    shared = set.intersection(*sets) if sets else set()
    jaccard = [[round(len(a & b) / len(a | b), 4) if a | b else 1.0 for b in sets] for a in sets]
    habitats = {}
    for k, r in enumerate(reports):
        for h in r["habitats"]["levels"].get("1", []):
            habitats.setdefault(h["code"], {"code": h["code"], "name": h["name"], "coverage": [0.0] * len(reports)})
            habitats[h["code"]]["coverage"][k] = h["coverage"]
    indicators = {}
    for k, r in enumerate(reports):
        for e in r["indicators"]["items"] + r["traits"]["items"]:
            indicators.setdefault(e["id"], {"id": e["id"], "title": e["title"], "units": e["units"],
                                            "mean": [None] * len(reports)})
            indicators[e["id"]]["mean"][k] = e["mean"]
    return {
        "areas": [summary(r) for r in reports],
        "species": {
            "shared_by_all": len(shared),
            "shared": sorted(({"id": i, "name": names[i]} for i in shared), key=lambda s: s["name"])[:200],
            "unique": [len(s - set.union(set(), *(o for j, o in enumerate(sets) if j != k))) for k, s in enumerate(sets)],
            "jaccard": jaccard,
        },
        "habitats_level1": sorted(habitats.values(), key=lambda h: -max(c or 0 for c in h["coverage"])),
        "indicators": list(indicators.values()),
    }
