/** Country outlines for the offline basemap, from world-atlas TopoJSON (plain, no Leaflet). */
import { feature } from 'topojson-client'

// world-atlas polygons are spherical (no antimeridian cut); Antarctica wraps the pole and
// cannot be drawn on a flat map, and is far from Europe anyway.
const ANTARCTICA_ID = '010'

/**
 * Shift longitudes by whole turns so a ring never jumps more than 180 degrees between vertices:
 * a ring crossing the antimeridian then draws past +/-180 instead of as a band across the map.
 */
export function unwrapRing(ring) {
  const out = []
  let shift = 0
  for (let i = 0; i < ring.length; i++) {
    const [lon, lat] = ring[i]
    if (i > 0) {
      const delta = lon + shift - out[i - 1][0]
      if (delta > 180) shift -= 360
      else if (delta < -180) shift += 360
    }
    out.push([lon + shift, lat])
  }
  return out
}

/** GeoJSON FeatureCollection of countries, ready for a flat (Web Mercator) map. */
export function countriesGeoJSON(topology) {
  const collection = feature(topology, topology.objects.countries)
  const features = collection.features
    .filter((f) => f.id !== ANTARCTICA_ID && f.geometry)
    .map((f) => ({ ...f, geometry: unwrapGeometry(f.geometry) }))
  return { type: 'FeatureCollection', features }
}

function unwrapGeometry(geometry) {
  if (geometry.type === 'Polygon') {
    return { ...geometry, coordinates: geometry.coordinates.map(unwrapRing) }
  }
  if (geometry.type === 'MultiPolygon') {
    return { ...geometry, coordinates: geometry.coordinates.map((poly) => poly.map(unwrapRing)) }
  }
  return geometry
}
