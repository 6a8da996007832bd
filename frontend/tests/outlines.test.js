import { describe, expect, it } from 'vitest'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { countriesGeoJSON, unwrapRing } from '../src/map/outlines.js'

const require = createRequire(import.meta.url)

describe('unwrapRing', () => {
  it('leaves an ordinary ring alone', () => {
    const ring = [[10, 48], [11, 48], [11, 49], [10, 48]]
    expect(unwrapRing(ring)).toEqual(ring)
  })

  it('continues past +180 instead of jumping to -180', () => {
    const ring = [[178, 65], [-179, 66], [-178, 65], [178, 65]]
    expect(unwrapRing(ring)).toEqual([[178, 65], [181, 66], [182, 65], [178, 65]])
  })
})

describe('countriesGeoJSON', () => {
  const topology = JSON.parse(readFileSync(require.resolve('world-atlas/countries-50m.json'), 'utf8'))
  const collection = countriesGeoJSON(topology)

  it('has the countries of Europe and drops Antarctica', () => {
    const names = collection.features.map((f) => f.properties.name)
    expect(names).toContain('Germany')
    expect(names).toContain('France')
    expect(names).not.toContain('Antarctica')
  })

  it('has no ring that jumps across the map', () => {
    let largestJump = 0
    for (const f of collection.features) {
      const polygons = f.geometry.type === 'Polygon' ? [f.geometry.coordinates] : f.geometry.coordinates
      for (const ring of polygons.flat()) {
        for (let i = 1; i < ring.length; i++) {
          largestJump = Math.max(largestJump, Math.abs(ring[i][0] - ring[i - 1][0]))
        }
      }
    }
    expect(largestJump).toBeLessThanOrEqual(180)
  })
})
