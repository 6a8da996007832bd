import { describe, expect, it } from 'vitest'
import { featureInfoRows, featureInfoUrl, queryLayers } from '../src/featureInfo.js'

const layers = [
  { id: 'habitat.l3', kind: 'habitat', wms_layer: 'habitat.l3', legend: { type: 'categorical' } },
  { id: 'indicator.richness', kind: 'indicator', wms_layer: 'indicator.richness', legend: { type: 'continuous' } },
  { id: 'indicator.richness.ci', kind: 'indicator-uncertainty', wms_layer: 'indicator.richness.ci', legend: {} },
  { id: 'species.3', kind: 'species', wms_layer: 'species.3', legend: { type: 'continuous' } },
]

describe('values at a point', () => {
  it('asks about the shown layer first, then the headline layers, once each', () => {
    expect(queryLayers(layers, 'species.3')).toEqual(['species.3', 'habitat.l3', 'indicator.richness'])
    expect(queryLayers(layers, 'habitat.l3')).toEqual(['habitat.l3', 'indicator.richness'])
    expect(queryLayers([], 'x')).toEqual([])
  })

  it('builds a WMS 1.1.1 GetFeatureInfo on the middle pixel around the point', () => {
    const url = new URL(featureInfoUrl(['a', 'b'], 8.5, 48.4), 'http://x')
    const p = Object.fromEntries(url.searchParams)
    expect(url.pathname).toBe('/wms')
    expect(p).toMatchObject({ REQUEST: 'GetFeatureInfo', VERSION: '1.1.1', SRS: 'EPSG:4326', QUERY_LAYERS: 'a,b', LAYERS: 'a,b' })
    expect(p).toMatchObject({ WIDTH: '3', HEIGHT: '3', X: '1', Y: '1', INFO_FORMAT: 'application/json', FEATURE_COUNT: '2' })
    const [w, s, e, n] = p.BBOX.split(',').map(Number)
    expect((w + e) / 2).toBeCloseTo(8.5, 9)
    expect((s + n) / 2).toBeCloseTo(48.4, 9)
  })

  it('turns the answer into rows, "no data" outside the region', () => {
    const rows = featureInfoRows({
      features: [
        { id: 'indicator.richness', properties: { layer: 'indicator.richness', title: 'Species richness', value: 1.1, text: '1.1 ± 1.8 species' } },
        { id: 'habitat.l3', properties: { layer: 'habitat.l3', title: 'Habitat', value: null, text: 'no data' } },
      ],
    })
    expect(rows).toEqual([
      { layer: 'indicator.richness', title: 'Species richness', text: '1.1 ± 1.8 species', hasValue: true },
      { layer: 'habitat.l3', title: 'Habitat', text: 'no data', hasValue: false },
    ])
  })
})
