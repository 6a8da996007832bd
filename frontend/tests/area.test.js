import { describe, expect, it } from 'vitest'
import { geometryBounds, laeaToLonLat, lonLatToLaea, metatileAt, metatilePolygon, parseAreaGeoJSON } from '../src/area.js'

const square = [[[8.4, 48.3], [8.5, 48.3], [8.5, 48.4], [8.4, 48.4], [8.4, 48.3]]]

describe('parseAreaGeoJSON', () => {
  it('accepts a geometry, a Feature and merges a FeatureCollection', () => {
    expect(parseAreaGeoJSON(JSON.stringify({ type: 'Polygon', coordinates: square }))).toEqual({ type: 'Polygon', coordinates: square })
    const feature = { type: 'Feature', properties: {}, geometry: { type: 'Polygon', coordinates: square } }
    expect(parseAreaGeoJSON(JSON.stringify(feature)).type).toBe('Polygon')
    const collection = { type: 'FeatureCollection', features: [feature, { ...feature, geometry: { type: 'MultiPolygon', coordinates: [square, square] } }, { type: 'Feature', geometry: { type: 'Point', coordinates: [1, 2] } }] }
    const merged = parseAreaGeoJSON(JSON.stringify(collection))
    expect(merged.type).toBe('MultiPolygon')
    expect(merged.coordinates).toHaveLength(3)
  })

  it('explains what is wrong', () => {
    expect(() => parseAreaGeoJSON('{oops')).toThrow(/not valid JSON/)
    expect(() => parseAreaGeoJSON('{"type":"Point","coordinates":[1,2]}')).toThrow(/No Polygon/)
    expect(() => parseAreaGeoJSON('{"type":"Polygon","coordinates":[[[0,0],[1,1],[0,0]]]}')).toThrow(/fewer than 4/)
    const projected = { type: 'Polygon', coordinates: [[[4200000, 2800000], [4201000, 2800000], [4201000, 2801000], [4200000, 2800000]]] }
    expect(() => parseAreaGeoJSON(JSON.stringify(projected))).toThrow(/WGS84/)
  })

  it('gives the bounds', () => {
    expect(geometryBounds({ type: 'Polygon', coordinates: square })).toEqual([8.4, 48.3, 8.5, 48.4])
  })
})

describe('EPSG:3035 meta-tiles', () => {
  it('projects like PROJ (ETRS89-LAEA) and back', () => {
    expect(lonLatToLaea(10, 52)).toEqual([4321000, 3210000])
    // pyproj: Transformer.from_crs(4326, 3035, always_xy=True).transform(2.35, 48.85)
    const [x, y] = lonLatToLaea(2.35, 48.85)
    expect(x).toBeCloseTo(3760536.8229, 3)
    expect(y).toBeCloseTo(2888771.0210, 3)
    const [lon, lat] = laeaToLonLat(x, y)
    expect(lon).toBeCloseTo(2.35, 9)
    expect(lat).toBeCloseTo(48.85, 9)
  })

  it('names the meta-tile under a point from its lower-left corner in km', () => {
    expect(metatileAt(8.5, 48.4)).toBe('E4200N2800')
    expect(metatileAt(2.35, 48.85)).toBe('E3750N2875')
  })

  it('draws the meta-tile square as a densified WGS84 ring', () => {
    const polygon = metatilePolygon('E4200N2800', 4)
    const ring = polygon.coordinates[0]
    expect(ring).toHaveLength(17)
    expect(ring[0]).toEqual(ring[16])
    const corners = [ring[0], ring[4], ring[8], ring[12]].map(([lon, lat]) => lonLatToLaea(lon, lat))
    const expected = [[4200000, 2800000], [4225000, 2800000], [4225000, 2825000], [4200000, 2825000]]
    corners.forEach(([cx, cy], i) => {
      expect(Math.abs(cx - expected[i][0])).toBeLessThan(0.05)
      expect(Math.abs(cy - expected[i][1])).toBeLessThan(0.05)
    })
    expect(metatilePolygon('nope')).toBeNull()
  })
})
