"""GetFeatureInfo: what a layer says at a point, as text/plain, text/html or application/json.

One record per layer: species probability (and presence against the run's threshold), habitat
code and name (with the class probability), indicator mean +/- 2 sigma, trait value and spread,
IUCN category, embedding components. Values come from the full-resolution cell under the point.
"""

from __future__ import annotations

import json
from html import escape

from backend.core.layers import LayerInfo
from tiles.colormaps import PROBABILITY_CODE_SCALE
from tiles.render import Sampler, _transform

INFO_FORMATS = ("text/plain", "text/html", "application/json")
# The companion band of a layer in the same file: indicator mean and its 2-sigma half-width, trait
# mean and its spread.
COMPANIONS = {".ci": ("two_sigma", "mean"), ".sd": ("sd_log", "mean")}


def _round(v: float | None, digits: int = 4) -> float | None:
    return None if v is None else float(f"{v:.{digits}g}")


def _legend_item(info: LayerInfo, value) -> dict | None:
    for item in info.legend.get("items", []):
        if item.get("value") == value:
            return item
    return None


def point_record(info: LayerInfo, x: float, y: float, crs: str, layers: dict[str, LayerInfo]) -> dict:
    """The record of ``info`` at (x, y) in ``crs``; ``layers`` are the live run's (for habitat
    probability). ``value`` is None at nodata or outside the layer."""
    sampler = Sampler(info.path)
    values = sampler.values_at(x, y, crs)
    rec: dict = {"layer": info.id, "title": info.title, "kind": info.kind, "units": info.units}
    if values is None:
        rec["value"] = None
        return rec
    raw = values[info.band - 1] if info.kind != "embedding" else values[:3]
    descriptions = list(sampler.meta.descriptions)
    if info.kind in ("species", "species-presence"):
        scale = sampler.meta.scales[info.band - 1] or 1.0 / PROBABILITY_CODE_SCALE
        p = None if raw is None else round(raw * scale, 4)
        rec.update(value=p, units="probability")
        if info.kind == "species-presence" and info.colormap and info.colormap.startswith("presence-"):
            t_code = int(info.colormap.split("-")[1])
            rec["threshold"] = round(t_code / PROBABILITY_CODE_SCALE, 4)
            rec["present"] = None if raw is None else bool(raw >= t_code)
        rec["species_id"] = info.species_id
    elif info.kind == "habitat":
        item = _legend_item(info, raw)
        rec.update(value=raw, code=item.get("code") if item else None,
                   name=(item["label"].split(" ", 1)[1] if item and " " in item["label"] else None))
        prob = layers.get("habitat.l3.probability")
        if prob is not None and raw is not None:
            pv = Sampler(prob.path).values_at(x, y, crs)
            rec["probability"] = None if not pv else _round(pv[prob.band - 1])
    elif info.kind == "embedding":
        rec.update(value=None if any(v is None for v in raw) else [int(v) for v in raw],
                   bands=info.legend.get("bands"))
    elif info.legend.get("type") == "categorical":
        item = _legend_item(info, raw)
        rec.update(value=raw, label=item["label"] if item else None)
    else:
        rec["value"] = _round(raw)
        for suffix, (name, base_name) in COMPANIONS.items():
            if info.id.endswith(suffix) and info.id[: -len(suffix)] in descriptions:
                rec[base_name] = _round(values[descriptions.index(info.id[: -len(suffix)])])
            elif info.id + suffix in descriptions:
                rec[name] = _round(values[descriptions.index(info.id + suffix)])
    return rec


def _value_text(rec: dict) -> str:
    v = rec.get("value")
    if v is None:
        return "no data"
    units = f" {rec['units']}" if rec.get("units") else ""
    if rec["kind"] == "species-presence":
        return f"{'present' if rec['present'] else 'absent'} (probability {v:g}, threshold {rec['threshold']:g})"
    if rec["kind"] == "habitat":
        p = f", probability {rec['probability']:g}" if rec.get("probability") is not None else ""
        return f"{rec['code']} {rec['name'] or ''}".strip() + p
    if rec["kind"] == "embedding":
        return ", ".join(f"{b}: {c}" for b, c in zip(rec.get("bands") or [], v))
    if "label" in rec:
        return str(rec["label"])
    if rec.get("two_sigma") is not None:
        return f"{v:g} ± {rec['two_sigma']:g}{units} (mean ± 2 sigma)"
    if rec.get("mean") is not None:
        what = "2-sigma half-width" if rec["layer"].endswith(".ci") else "spread, sd of log"
        return f"{v:g}{units} ({what}; mean {rec['mean']:g})"
    if rec.get("sd_log") is not None:
        return f"{v:g}{units} (sd of log {rec['sd_log']:g})"
    return f"{v:g}{units}"


def render_records(records: list[dict], info_format: str, point: dict) -> str:
    """``records`` at ``point`` ({x, y, crs, lon, lat}) in one of INFO_FORMATS."""
    if info_format == "application/json":
        features = [{"type": "Feature", "id": r["layer"],
                     "geometry": {"type": "Point", "coordinates": [point["lon"], point["lat"]]},
                     "properties": {**r, "text": _value_text(r)}} for r in records]
        return json.dumps({"type": "FeatureCollection", "features": features})
    if info_format == "text/html":
        rows = "".join(f"<tr><th>{escape(r['title'])}</th><td>{escape(r['layer'])}</td><td>{escape(_value_text(r))}</td></tr>"
                       for r in records)
        return ("<html><head><meta charset=\"utf-8\"><title>GeoFlora</title></head><body>"
                f"<table class=\"geoflora-featureinfo\"><caption>{point['lon']:.5f}, {point['lat']:.5f}</caption>"
                f"<tr><th>layer</th><th>id</th><th>value</th></tr>{rows}</table></body></html>")
    return "\n".join(f"{r['layer']} ({r['title']}): {_value_text(r)}" for r in records)


def lonlat(x: float, y: float, crs: str) -> tuple[float, float]:
    lon, lat = _transform(crs, "EPSG:4326", [x], [y])
    return float(lon[0]), float(lat[0])
