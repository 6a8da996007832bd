"""Every client-given parameter of the TiTiler routes, bounded and validated before TiTiler parses it.

TiTiler accepts whatever its dependencies can parse: a 10,000-character colormap, ``tilesize`` of a
million pixels, ten thousand histogram bins, a polygon whose full-resolution read does not fit in
memory. Here each parameter has a rule (length, count, value range, syntax); anything outside gets a
400 that names the parameter and the limit. Expressions are checked in full by tiles/expression.py.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import morecantile
from fastapi import Request
from pyproj import Transformer
from titiler.core.errors import BadRequestError

from tiles.expression import MAX_LENGTH as EXPRESSION_MAX_LENGTH
from tiles.expression import ExpressionError, check_length

MAX_QUERY_BYTES = 32_768  # the whole query string (checked after each parameter's own limit)
MAX_PARAMS = 64  # values over all parameters
MAX_TILESIZE = 1024
MAX_BUFFER = 64
MAX_BINS = 1000
MAX_CATEGORIES = 256
MAX_PERCENTILES = 32
MAX_COLORMAP_ENTRIES = 256
MAX_FEATURES = 100  # features of one POST statistics body
MAX_COVER_SCALE = 100
MAX_ZOOM = 30  # deeper than any 50 m layer needs (level 30 is 4 cm at the equator)


def _fail(message: str):
    raise BadRequestError(message)


def _float(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        _fail(f"{name}={raw!r} is not a number")
    if not math.isfinite(value):
        _fail(f"{name}={raw!r} must be a finite number")
    return value


def _int(name: str, raw: str, lo: int, hi: int) -> int:
    if not re.fullmatch(r"[+-]?\d{1,10}", raw.strip()):
        _fail(f"{name}={raw!r} is not an integer")
    value = int(raw)
    if not lo <= value <= hi:
        _fail(f"{name}={value} is out of range: it must be between {lo} and {hi}")
    return value


def _ranged(lo: int, hi: int) -> Callable[[str, str], None]:
    return lambda name, raw: _int(name, raw, lo, hi)


def _float_range(lo: float, hi: float) -> Callable[[str, str], None]:
    def check(name: str, raw: str) -> None:
        value = _float(name, raw)
        if not lo <= value <= hi:
            _fail(f"{name}={value:g} is out of range: it must be between {lo:g} and {hi:g}")
    return check


def _pair(name: str, raw: str) -> None:
    parts = re.sub(r"[\[\]]", "", raw).split(",")
    if len(parts) != 2:
        _fail(f"{name}={raw!r} must be two numbers: min,max")
    lo, hi = (_float(name, p) for p in parts)
    if lo == hi:
        _fail(f"{name}={raw!r}: min and max must differ")


def _nodata(name: str, raw: str) -> None:
    if raw.strip().lower() not in ("nan", "inf", "-inf"):
        _float(name, raw)


def _bool(name: str, raw: str) -> None:
    if raw.strip().lower() not in ("true", "false", "1", "0", "yes", "no", "on", "off", "t", "f", "y", "n"):
        _fail(f"{name}={raw!r} is not true or false")


def _json(name: str, raw: str) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        _fail(f"{name} is not valid JSON")


def _color(value: Any) -> bool:
    if isinstance(value, str):
        return bool(re.fullmatch(r"#?[0-9A-Fa-f]{3,8}|[a-z]{3,20}", value))
    return (isinstance(value, list) and 3 <= len(value) <= 4
            and all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in value))


def _colormap(name: str, raw: str) -> None:
    value = _json(name, raw)
    if isinstance(value, dict):
        entries = list(value.items())
        keys_ok = all(re.fullmatch(r"-?\d{1,10}", k) for k, _ in entries)
        colors_ok = all(_color(v) for _, v in entries)
    elif isinstance(value, list):
        entries = value
        keys_ok = all(isinstance(e, list) and len(e) == 2 and isinstance(e[0], list) and len(e[0]) == 2
                      and all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
                              for x in e[0]) for e in entries)
        colors_ok = keys_ok and all(_color(e[1]) for e in entries)
    else:
        _fail(f"{name} must be a JSON object {{value: color}} or a list of [[min, max], color]")
    if not entries or len(entries) > MAX_COLORMAP_ENTRIES:
        _fail(f"{name} has {len(entries)} entries; it must have 1 to {MAX_COLORMAP_ENTRIES}")
    if not keys_ok:
        _fail(f"{name}: keys must be integers (or [min, max] intervals of finite numbers)")
    if not colors_ok:
        _fail(f"{name}: colors must be hex strings ('#ff0000') or [r, g, b(, a)] lists of 0-255")


def _algorithm_params(name: str, raw: str) -> None:
    value = _json(name, raw)
    if not isinstance(value, dict) or len(value) > 16:
        _fail(f"{name} must be a JSON object of at most 16 parameters")
    for key, v in value.items():
        if isinstance(v, bool) or v is None:
            continue
        if isinstance(v, (int, float)):
            if not math.isfinite(v) or abs(v) > 1e6:
                _fail(f"{name}: {key}={v} must be a finite number of magnitude at most 1e6")
        elif not (isinstance(v, str) and len(v) <= 32):
            _fail(f"{name}: {key} must be a number, a boolean or a short string")


_CRS = re.compile(r"\[?(?:(?:EPSG|ESRI|OGC|IAU_2015):[0-9A-Za-z_]{1,12}"
                  r"|https?://www\.opengis\.net/def/crs/[A-Za-z_0-9]{1,12}/[0-9.]{1,8}/[0-9A-Za-z_]{1,12})\]?",
                  re.IGNORECASE)


def _crs(name: str, raw: str) -> None:
    if not _CRS.fullmatch(raw.strip()):
        _fail(f"{name}={raw!r} is not accepted: give an authority code such as EPSG:4326 (or its OGC URI)")


def _color_formula(name: str, raw: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9 ,.+\-]*", raw):
        _fail(f"{name}={raw!r}: only rio-color operations (e.g. 'Gamma RGB 1.5 Saturation 1.1') are accepted")
    if len(raw.split()) > 32:
        _fail(f"{name} has more than 32 words")


def _bins(name: str, raw: str) -> None:
    parts = raw.split(",")
    if len(parts) == 1:
        _int(name, raw, 1, MAX_BINS)
        return
    if len(parts) > MAX_BINS + 1:
        _fail(f"{name} has {len(parts)} edges; at most {MAX_BINS + 1}")
    edges = [_float(name, p) for p in parts]
    if any(b <= a for a, b in zip(edges, edges[1:])):
        _fail(f"{name}: bin edges must increase")


def _expression(name: str, raw: str) -> None:
    try:
        check_length(name, raw, EXPRESSION_MAX_LENGTH)
    except ExpressionError as exc:
        _fail(str(exc))


@dataclass(frozen=True)
class Rule:
    max_len: int = 64
    max_count: int = 1
    check: Callable[[str, str], Any] | None = None


def rules(max_image_px: int) -> dict[str, Rule]:
    """The rule of every documented TiTiler parameter (``max_image_px``: the settings' image limit)."""
    size = _ranged(1, max_image_px)
    enum = Rule(32)
    return {
        "expression": Rule(EXPRESSION_MAX_LENGTH, 1, _expression),  # then checked in full (tiles/expression.py)
        "bidx": Rule(4, 16, _ranged(1, 9999)),  # then checked against the layer's bands
        "rescale": Rule(64, 16, _pair),
        "colormap": Rule(16_384, 1, _colormap),
        "colormap_name": enum,
        "color_formula": Rule(256, 1, _color_formula),
        "nodata": Rule(32, 1, _nodata),
        "unscale": Rule(8, 1, _bool), "return_mask": Rule(8, 1, _bool), "categorical": Rule(8, 1, _bool),
        "resampling": enum, "reproject": enum, "f": enum, "format": enum, "tile_format": enum,
        "algorithm": enum,
        "algorithm_params": Rule(1024, 1, _algorithm_params),
        "tilesize": Rule(8, 1, _ranged(1, MAX_TILESIZE)),
        "buffer": Rule(16, 1, _float_range(0, MAX_BUFFER)),
        "padding": Rule(8, 1, _ranged(0, MAX_BUFFER)),
        "max_size": Rule(8, 1, size), "height": Rule(8, 1, size), "width": Rule(8, 1, size),
        "minzoom": Rule(4, 1, _ranged(0, 30)), "maxzoom": Rule(4, 1, _ranged(0, 30)),
        "c": Rule(32, MAX_CATEGORIES, _float),
        "p": Rule(4, MAX_PERCENTILES, _ranged(0, 100)),
        "histogram_bins": Rule(16_384, 1, _bins),
        "histogram_range": Rule(64, 1, _pair),
        "cover_scale": Rule(4, 1, _ranged(1, MAX_COVER_SCALE)),
        "coord_crs": Rule(128, 1, _crs), "dst_crs": Rule(128, 1, _crs), "crs": Rule(128, 1, _crs),
    }


UNKNOWN = Rule(256, 4)  # parameters TiTiler ignores (cache busters...): bounded, not interpreted


def check_query(request: Request, max_image_px: int) -> None:
    """400 naming the first parameter (query or path) outside its rule."""
    items = request.query_params.multi_items()
    if len(items) > MAX_PARAMS:
        _fail(f"{len(items)} query parameters; at most {MAX_PARAMS} are accepted")
    table = rules(max_image_px)
    counts: dict[str, int] = {}
    for name, raw in items:
        rule = table.get(name, UNKNOWN)
        if len(name) > 64:
            _fail(f"a query parameter name is {len(name)} characters long; at most 64 are accepted")
        counts[name] = counts.get(name, 0) + 1
        if counts[name] > rule.max_count:
            _fail(f"parameter {name} is given {counts[name]} times; at most {rule.max_count}")
        if "\x00" in raw or not raw.isprintable():
            _fail(f"parameter {name} contains control characters")
        if rule.check is _expression:
            rule.check(name, raw)
            continue
        if len(raw) > rule.max_len:
            _fail(f"parameter {name} is {len(raw)} characters long; at most {rule.max_len} are accepted")
        if rule.check is not None:
            rule.check(name, raw)
    query = request.url.query
    if len(query) > MAX_QUERY_BYTES:
        _fail(f"the query string is {len(query)} bytes long; at most {MAX_QUERY_BYTES} are accepted")
    for name in ("lon", "lat"):
        if name in request.path_params:
            _float(name, request.path_params[name])
    if "lon" in request.path_params and "coord_crs" not in request.query_params:
        lon, lat = float(request.path_params["lon"]), float(request.path_params["lat"])
        if not (-180 <= lon <= 180 and -90 <= lat <= 90):
            _fail(f"point {lon:g},{lat:g} is not a WGS84 longitude,latitude")
    if "z" in request.path_params:
        check_tile_index(request.path_params.get("tileMatrixSetId"), request.path_params["z"],
                         request.path_params.get("x", "0"), request.path_params.get("y", "0"))


def check_tile_index(tms_id: str | None, z: str, x: str, y: str) -> None:
    """A tile address inside its tile matrix set: a zoom level the set defines, and a column and
    row inside that level's matrix (a huge z or x would overflow the tile arithmetic)."""
    zoom = _int("z", z, 0, MAX_ZOOM)
    try:
        tms = morecantile.tms.get(tms_id or "WebMercatorQuad")
    except Exception:  # noqa: BLE001 - an unknown set is TiTiler's own 4xx
        return
    with warnings.catch_warnings():  # past its listed levels a regular set extends by scale
        warnings.simplefilter("ignore")
        matrix = tms.matrix(zoom)
    _int("x", x, 0, matrix.matrixWidth - 1)
    _int("y", y, 0, matrix.matrixHeight - 1)


def _coordinates(node: Any, out: list[tuple[float, float]], depth: int = 0) -> None:
    if depth > 6:
        _fail("GeoJSON coordinates are nested too deeply")
    if isinstance(node, list) and node and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in node):
        if len(node) < 2 or not all(math.isfinite(v) for v in node):
            _fail("GeoJSON positions must be two or three finite numbers")
        out.append((float(node[0]), float(node[1])))
    elif isinstance(node, list):
        for child in node:
            _coordinates(child, out, depth + 1)


def check_feature_budget(doc: Any, raster_crs: str, resolution: tuple[float, float], max_image_px: int,
                         coord_crs: str | None, max_size: int | None, width: int | None, height: int | None,
                         cover_scale: int) -> None:
    """POST statistics reads each feature's window (full resolution unless sized) and rasterises its
    coverage at ``cover_scale`` times that: refuse bodies whose reads exceed ``max_image_px`` squared."""
    features = doc.get("features") if isinstance(doc, dict) and doc.get("type") == "FeatureCollection" else [doc]
    if not isinstance(features, list):
        return  # not GeoJSON: TiTiler's own validation answers
    if len(features) > MAX_FEATURES:
        _fail(f"the body has {len(features)} features; at most {MAX_FEATURES} are accepted")
    to_raster = Transformer.from_crs(coord_crs or "EPSG:4326", raster_crs, always_xy=True)
    budget = float(max_image_px) ** 2
    total = 0.0
    for n, feature in enumerate(features):
        geometry = feature.get("geometry") if isinstance(feature, dict) else None
        if not isinstance(geometry, dict) or geometry.get("type") not in ("Polygon", "MultiPolygon"):
            _fail(f"feature {n}: statistics need a Polygon or MultiPolygon geometry")
        points: list[tuple[float, float]] = []
        _coordinates(geometry.get("coordinates"), points)
        if len(points) < 4:
            _fail(f"feature {n}: a polygon needs at least 4 positions (a closed ring)")
        xs, ys = zip(*points)
        left, bottom, right, top = to_raster.transform_bounds(min(xs), min(ys), max(xs), max(ys))
        if not all(math.isfinite(v) for v in (left, bottom, right, top)):
            _fail("a feature lies outside the area its coordinate reference system can express")
        cols, rows = (right - left) / resolution[0] + 1, (top - bottom) / resolution[1] + 1
        if width or height:
            cols, rows = width or cols, height or rows
        elif max_size:
            scale = min(1.0, max_size / max(cols, rows))
            cols, rows = cols * scale, rows * scale
        total += cols * rows * cover_scale ** 2
    if total > budget:
        _fail(f"the features cover {total:.3g} pixels at this resolution and cover_scale={cover_scale}; at most "
              f"{budget:.3g} ({max_image_px} x {max_image_px}) are read: pass max_size (or width and height) "
              "or a smaller cover_scale")
