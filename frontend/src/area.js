/**
 * Areas for reports (plain, no Leaflet): uploaded GeoJSON files, and meta-tiles of the EPSG:3035
 * grid (ETRS89-LAEA Europe) turned into WGS84 polygons.
 */

/** Largest file accepted for upload (the server limits request bodies to about 2 MB). */
export const MAX_UPLOAD_BYTES = 2_000_000

/**
 * The area in a GeoJSON text: a Polygon or MultiPolygon geometry, a Feature of one, or a
 * FeatureCollection (its polygons are merged into one MultiPolygon). Throws an Error whose message
 * tells the user what is wrong.
 */
export function parseAreaGeoJSON(text) {
  let doc
  try {
    doc = JSON.parse(text)
  } catch {
    throw new Error('The file is not valid JSON (expected a GeoJSON Polygon, MultiPolygon or Feature).')
  }
  const polygons = []
  const visit = (node, depth = 0) => {
    if (!node || typeof node !== 'object' || depth > 3) return
    if (node.type === 'FeatureCollection' && Array.isArray(node.features)) {
      node.features.forEach((f) => visit(f, depth + 1))
    } else if (node.type === 'Feature') visit(node.geometry, depth + 1)
    else if (node.type === 'GeometryCollection' && Array.isArray(node.geometries)) {
      node.geometries.forEach((g) => visit(g, depth + 1))
    } else if (node.type === 'Polygon') polygons.push(node.coordinates)
    else if (node.type === 'MultiPolygon' && Array.isArray(node.coordinates)) polygons.push(...node.coordinates)
  }
  visit(doc)
  if (polygons.length === 0) {
    throw new Error('No Polygon or MultiPolygon in the file: draw or upload an area, not points or lines.')
  }
  for (const polygon of polygons) checkPolygon(polygon)
  return polygons.length === 1
    ? { type: 'Polygon', coordinates: polygons[0] }
    : { type: 'MultiPolygon', coordinates: polygons }
}

function checkPolygon(polygon) {
  if (!Array.isArray(polygon) || polygon.length === 0) throw new Error('A polygon has no rings.')
  for (const ring of polygon) {
    if (!Array.isArray(ring) || ring.length < 4) throw new Error('A polygon ring has fewer than 4 positions.')
    for (const position of ring) {
      const [lon, lat] = Array.isArray(position) ? position : []
      if (!Number.isFinite(lon) || !Number.isFinite(lat)) throw new Error('A position is not two numbers.')
      if (Math.abs(lon) > 180 || Math.abs(lat) > 90) {
        throw new Error(
          `Coordinate (${lon}, ${lat}) is not longitude/latitude: GeoJSON must be in WGS84 (EPSG:4326).`,
        )
      }
    }
  }
}

/** Bounding box [west, south, east, north] of a Polygon or MultiPolygon. */
export function geometryBounds(geometry) {
  const polygons = geometry.type === 'Polygon' ? [geometry.coordinates] : geometry.coordinates
  let [w, s, e, n] = [Infinity, Infinity, -Infinity, -Infinity]
  for (const polygon of polygons) {
    for (const [lon, lat] of polygon[0]) {
      w = Math.min(w, lon)
      e = Math.max(e, lon)
      s = Math.min(s, lat)
      n = Math.max(n, lat)
    }
  }
  return [w, s, e, n]
}

// ---- EPSG:3035, ETRS89 / LAEA Europe (GRS80; Snyder, Map Projections, eqs. 24-13 ff.) -----------
const A = 6378137
const F = 1 / 298.257222101
const E2 = 2 * F - F * F
const E = Math.sqrt(E2)
const LAT0 = (52 * Math.PI) / 180
const LON0 = (10 * Math.PI) / 180
const FE = 4321000
const FN = 3210000

function q(phi) {
  const s = Math.sin(phi)
  return (1 - E2) * (s / (1 - E2 * s * s) - (1 / (2 * E)) * Math.log((1 - E * s) / (1 + E * s)))
}
const QP = q(Math.PI / 2)
const RQ = A * Math.sqrt(QP / 2)
const BETA0 = Math.asin(q(LAT0) / QP)
const D = (A * Math.cos(LAT0)) / Math.sqrt(1 - E2 * Math.sin(LAT0) ** 2) / (RQ * Math.cos(BETA0))

/** WGS84 longitude/latitude (degrees) to EPSG:3035 metres [x, y]. */
export function lonLatToLaea(lon, lat) {
  const phi = (lat * Math.PI) / 180
  const lam = (lon * Math.PI) / 180 - LON0
  const beta = Math.asin(q(phi) / QP)
  const b = RQ * Math.sqrt(2 / (1 + Math.sin(BETA0) * Math.sin(beta) + Math.cos(BETA0) * Math.cos(beta) * Math.cos(lam)))
  const x = FE + b * D * Math.cos(beta) * Math.sin(lam)
  const y = FN + (b / D) * (Math.cos(BETA0) * Math.sin(beta) - Math.sin(BETA0) * Math.cos(beta) * Math.cos(lam))
  return [x, y]
}

/** EPSG:3035 metres to WGS84 [longitude, latitude] in degrees. */
export function laeaToLonLat(x, y) {
  const dx = (x - FE) / D
  const dy = (y - FN) * D
  const rho = Math.hypot(dx, dy)
  if (rho === 0) return [(LON0 * 180) / Math.PI, (LAT0 * 180) / Math.PI]
  const ce = 2 * Math.asin(rho / (2 * RQ))
  const qv = QP * (Math.cos(ce) * Math.sin(BETA0) + (dy * Math.sin(ce) * Math.cos(BETA0)) / rho)
  const lam = Math.atan2(dx * Math.sin(ce), rho * Math.cos(BETA0) * Math.cos(ce) - dy * Math.sin(BETA0) * Math.sin(ce))
  // Latitude from q by fixed-point iteration (converges in a few steps).
  let phi = Math.asin(qv / 2)
  for (let i = 0; i < 8; i++) {
    const s = Math.sin(phi)
    const t = 1 - E2 * s * s
    phi += ((t * t) / (2 * Math.cos(phi))) * (qv / (1 - E2) - s / t + (1 / (2 * E)) * Math.log((1 - E * s) / (1 + E * s)))
  }
  return [((lam + LON0) * 180) / Math.PI, (phi * 180) / Math.PI]
}

/** Meta-tile size in metres: 25 km x 25 km of 50 m cells (DESIGN.md "Grid and meta-tiles"). */
export const METATILE_M = 25_000
const TILE_ID = /^E(\d{4})N(\d{4})$/

/** Id (`E4200N2800`, lower-left corner in km) of the meta-tile holding a WGS84 point. */
export function metatileAt(lon, lat) {
  const [x, y] = lonLatToLaea(lon, lat)
  const km = (v) => String((Math.floor(v / METATILE_M) * METATILE_M) / 1000).padStart(4, '0')
  return `E${km(x)}N${km(y)}`
}

/**
 * The meta-tile as a WGS84 Polygon: its EPSG:3035 square with `perEdge` points per edge, so the
 * curved edges in longitude/latitude follow the square closely. Null for a malformed id.
 */
export function metatilePolygon(id, perEdge = 8) {
  const match = TILE_ID.exec(String(id))
  if (!match) return null
  const x0 = Number(match[1]) * 1000
  const y0 = Number(match[2]) * 1000
  const corners = [
    [x0, y0],
    [x0 + METATILE_M, y0],
    [x0 + METATILE_M, y0 + METATILE_M],
    [x0, y0 + METATILE_M],
  ]
  const ring = []
  for (let c = 0; c < 4; c++) {
    const [ax, ay] = corners[c]
    const [bx, by] = corners[(c + 1) % 4]
    for (let i = 0; i < perEdge; i++) {
      const t = i / perEdge
      ring.push(laeaToLonLat(ax + (bx - ax) * t, ay + (by - ay) * t).map(round7))
    }
  }
  ring.push(ring[0])
  return { type: 'Polygon', coordinates: [ring] }
}

function round7(value) {
  return Math.round(value * 1e7) / 1e7
}
