"""Area geometries of reports: parse GeoJSON (RFC 7946), check it, project it to the grid (EPSG:3035).

Every problem is an :class:`InvalidInput` (422) or :class:`TooLarge` (413) whose message names what
is wrong and, where it helps, how to fix it.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import shapely
from pyproj import Transformer
from shapely.geometry import MultiPolygon, Polygon, mapping, shape
from shapely.geometry.base import BaseGeometry
from shapely.validation import explain_validity

from backend.core.errors import BadRequest, InvalidInput, TooLarge

WGS84_NAMES = {"urn:ogc:def:crs:OGC:1.3:CRS84", "urn:ogc:def:crs:OGC::CRS84", "EPSG:4326", "urn:ogc:def:crs:EPSG::4326",
               "CRS84", "OGC:CRS84", "http://www.opengis.net/def/crs/OGC/1.3/CRS84",
               "http://www.opengis.net/def/crs/EPSG/0/4326"}
ACCEPTED_TYPES = ("Polygon", "MultiPolygon")
COORD_DIGITS = 7  # ~1 cm: coordinates are rounded to this before hashing


@dataclass(frozen=True)
class Area:
    """A checked report area: the WGS84 geometry (normalised), its EPSG:3035 projection and area."""

    wgs84: BaseGeometry
    grid: BaseGeometry
    area_km2: float
    vertices: int

    @property
    def geojson(self) -> dict:
        return mapping(self.wgs84)

    def report_id(self, run_id: str) -> str:
        """Same geometry (up to ring start, orientation, ~1 cm) and same run: same id."""
        h = hashlib.sha256(run_id.encode() + b"\0" + shapely.to_wkb(self.wgs84, output_dimension=2))
        return h.hexdigest()[:32]


@lru_cache(maxsize=1)
def _to_grid() -> Transformer:
    return Transformer.from_crs("EPSG:4326", "EPSG:3035", always_xy=True)


def parse_json(body: bytes) -> object:
    try:
        return json.loads(body)
    except UnicodeDecodeError:
        raise BadRequest("invalid JSON: the body is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise BadRequest(f"invalid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    except RecursionError:
        raise BadRequest("invalid JSON: nested too deeply") from None
    except ValueError as exc:  # an integer of more than 4,300 digits
        raise BadRequest(f"invalid JSON: {exc}") from None


def _geometry_object(doc: object) -> dict:
    if not isinstance(doc, dict):
        raise InvalidInput(f"expected a GeoJSON object (Polygon, MultiPolygon or a Feature of one), got a JSON "
                           f"{type(doc).__name__}")
    _check_crs(doc)
    kind = doc.get("type")
    if kind == "Feature":
        geom = doc.get("geometry")
        if not isinstance(geom, dict):
            raise InvalidInput("the Feature has no geometry: expected a Polygon or MultiPolygon geometry")
        _check_crs(geom)
        return _geometry_object(geom)
    if kind == "FeatureCollection":
        feats = doc.get("features")
        if not isinstance(feats, list) or len(feats) != 1:
            raise InvalidInput("a FeatureCollection must hold exactly one Feature (one area per report); "
                               "send several areas to POST /api/reports one by one and compare them")
        return _geometry_object(feats[0])
    if kind not in ACCEPTED_TYPES:
        shown = kind if isinstance(kind, str) else json.dumps(kind)[:40]
        raise InvalidInput(f"wrong geometry type {shown!r}: an area must be a Polygon or MultiPolygon "
                           f"(or a Feature of one)")
    return doc


def _check_crs(doc: dict) -> None:
    crs = doc.get("crs")
    if crs is None:
        return
    name = crs.get("properties", {}).get("name") if isinstance(crs, dict) and isinstance(crs.get("properties"), dict) else None
    if name not in WGS84_NAMES:
        shown = name if isinstance(name, str) else json.dumps(crs)[:60]
        raise InvalidInput(f"non-WGS84 CRS {shown}: GeoJSON (RFC 7946) areas must be WGS84 longitude/latitude "
                           f"degrees; reproject the coordinates (e.g. from EPSG:3035) and drop the 'crs' member")


def _check_positions(coords: object, depth: int, where: str) -> int:
    """Check the nesting and numbers of a Polygon (depth 3) or MultiPolygon (4); returns the vertex count."""
    if not isinstance(coords, (list, tuple)):
        raise InvalidInput(f"{where}: expected an array of coordinates")
    if depth == 1:
        if len(coords) < 2 or len(coords) > 3 or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                          for v in coords):
            raise InvalidInput(f"{where}: a position is [longitude, latitude] (numbers), got {json.dumps(coords)[:60]}")
        lon, lat = coords[0], coords[1]
        if not (math.isfinite(lon) and math.isfinite(lat)):
            raise InvalidInput(f"{where}: coordinates must be finite numbers")
        if not (-180 <= lon <= 180 and -90 <= lat <= 90):
            raise InvalidInput(f"{where}: ({lon:g}, {lat:g}) is not a WGS84 longitude/latitude; GeoJSON (RFC 7946) "
                               f"areas are in degrees, not projected metres (non-WGS84 CRS?): reproject them")
        return 1
    if depth == 2:  # a linear ring
        if len(coords) < 4:
            raise InvalidInput(f"{where}: a polygon ring needs at least 4 positions (3 corners and the first one "
                               f"again), got {len(coords)}")
        n = sum(_check_positions(p, 1, f"{where}, position {i}") for i, p in enumerate(coords))
        if list(coords[0][:2]) != list(coords[-1][:2]):
            raise InvalidInput(f"{where}: the ring is not closed: its last position must repeat the first")
        return n
    if not coords:
        raise InvalidInput(f"{where}: empty coordinates")
    label = "ring" if depth == 3 else "polygon"
    return sum(_check_positions(c, depth - 1, f"{where}, {label} {i}") for i, c in enumerate(coords))


def parse_area(doc: object, max_vertices: int, max_area_km2: float) -> Area:
    """Check a GeoJSON area and project it to the grid."""
    geom_doc = _geometry_object(doc)
    kind = geom_doc["type"]
    coords = geom_doc.get("coordinates")
    if coords is None:
        raise InvalidInput(f"the {kind} has no 'coordinates'")
    vertices = _check_positions(coords, 3 if kind == "Polygon" else 4, kind)
    if vertices > max_vertices:
        raise InvalidInput(f"too many vertices: {vertices} (at most {max_vertices}); simplify the outline "
                           f"(e.g. QGIS Vector > Geometry Tools > Simplify)")
    try:
        geom = shape({"type": kind, "coordinates": coords})
    except (ValueError, TypeError, shapely.errors.GEOSException) as exc:
        raise InvalidInput(f"not a valid {kind}: {exc}") from None
    if geom.is_empty or geom.area == 0:
        raise InvalidInput(f"the {kind} encloses no area (all its corners lie on a line)")
    if not geom.is_valid:
        why = explain_validity(geom)
        hint = ("the outline crosses itself: redraw it without crossing, or split it at the crossing into a "
                "MultiPolygon (shapely.make_valid / PostGIS ST_MakeValid / QGIS 'Fix geometries' do this)"
                if "Self-intersection" in why or "Ring Self-intersection" in why else
                "fix it with shapely.make_valid, PostGIS ST_MakeValid or QGIS 'Fix geometries'")
        raise InvalidInput(f"invalid geometry: {why}; {hint}")
    geom = shapely.set_precision(shapely.normalize(geom), 10 ** -COORD_DIGITS)
    if geom.is_empty or not geom.is_valid:
        raise InvalidInput("the area is degenerate (thinner than a centimetre)")
    if isinstance(geom, Polygon):
        geom = MultiPolygon([geom])
    if abs(geom.bounds[1]) > 89 or abs(geom.bounds[3]) > 89:
        raise InvalidInput("the area reaches a pole: it is outside the mapped region (Europe)")
    grid = shapely.transform(geom, lambda xy: _xy(xy))
    if not all(math.isfinite(v) for v in grid.bounds) or not grid.is_valid:
        raise InvalidInput("the area is outside the mapped region (it cannot be projected to EPSG:3035, Europe)")
    area_km2 = grid.area / 1e6
    if area_km2 > max_area_km2:
        raise TooLarge(f"area too large: {area_km2:,.0f} km2 (at most {max_area_km2:,.0f} km2); draw a smaller area "
                       f"or split it and compare the parts")
    return Area(geom, grid, area_km2, vertices)


def _xy(xy):
    x, y = _to_grid().transform(xy[:, 0], xy[:, 1])
    return np.column_stack([x, y])
