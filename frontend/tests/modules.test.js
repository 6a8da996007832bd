import { describe, expect, it } from 'vitest'
import { flattenTree, mainLayerId, moduleLayers, moduleOfLayer, uncertaintyLayerId } from '../src/modules.js'

const layers = [
  { id: 'indicator.richness', kind: 'indicator' },
  { id: 'indicator.richness.ci', kind: 'indicator-uncertainty' },
  { id: 'trait.height', kind: 'trait' },
  { id: 'trait.height.sd', kind: 'trait-uncertainty' },
  { id: 'habitat.l1', kind: 'habitat' },
  { id: 'habitat.l3', kind: 'habitat' },
  { id: 'habitat.l3.probability', kind: 'habitat-probability' },
  { id: 'habitat.suitability.R22', kind: 'habitat-suitability' },
  { id: 'species.4', kind: 'species' },
  { id: 'species.4.presence', kind: 'species-presence' },
  { id: 'embedding.pca', kind: 'embedding' },
]

describe('modules', () => {
  it('sorts layers into modules without their uncertainty layers', () => {
    expect(moduleLayers(layers, 'indicators').map((l) => l.id)).toEqual(['indicator.richness'])
    expect(moduleLayers(layers, 'habitats').map((l) => l.id)).toEqual(['habitat.l1', 'habitat.l3'])
    expect(moduleLayers(layers, 'home').map((l) => l.id)).toEqual(['embedding.pca'])
    expect(moduleOfLayer(layers[1])).toBe('indicators')
    expect(moduleOfLayer(layers[9])).toBe('species')
    expect(moduleOfLayer(layers[7])).toBe('habitats') // a suitability map, opened from its fact sheet
    expect(moduleOfLayer(null)).toBe('home')
  })

  it('pairs each map with its uncertainty and back', () => {
    expect(uncertaintyLayerId(layers, 'indicator.richness')).toBe('indicator.richness.ci')
    expect(uncertaintyLayerId(layers, 'trait.height')).toBe('trait.height.sd')
    expect(uncertaintyLayerId(layers, 'habitat.l1')).toBe('habitat.l3.probability')
    expect(uncertaintyLayerId(layers, 'embedding.pca')).toBeNull()
    expect(mainLayerId(layers, 'indicator.richness.ci')).toBe('indicator.richness')
    expect(mainLayerId(layers, 'trait.height.sd')).toBe('trait.height')
    expect(mainLayerId(layers, 'habitat.l3.probability')).toBe('habitat.l3')
    expect(mainLayerId(layers, 'species.4')).toBe('species.4')
  })

  it('flattens the open branches of the habitat tree', () => {
    const tree = [
      { code: 'T', name: 'Forests', level: 1, mapped: true, children: [{ code: 'T1', name: 'Broadleaved', level: 2, mapped: true, children: [] }] },
      { code: 'C', name: 'Waters', level: 1, mapped: false, children: [] },
    ]
    expect(flattenTree(tree).map((r) => r.code)).toEqual(['T', 'C'])
    const open = flattenTree(tree, new Set(['T']))
    expect(open.map((r) => [r.code, r.open, r.hasChildren])).toEqual([['T', true, true], ['T1', false, false], ['C', false, false]])
  })
})

describe('class-only habitat map', () => {
  it('draws one class from a TiTiler expression in its legend colour', async () => {
    const { classOnlyLayer } = await import('../src/modules.js')
    const layer = {
      id: 'habitat.l3', title: 'EUNIS habitat, level 3', bounds: [1, 2, 3, 4], minzoom: 5, maxzoom: 16,
      legend: { type: 'categorical', items: [{ value: 30, code: 'T13', label: 'T13 Riparian forest', color: '#96e0a8' }] },
    }
    const only = classOnlyLayer(layer, 'T13')
    expect(only).toMatchObject({ id: 'habitat.l3:T13', bounds: [1, 2, 3, 4], minzoom: 5, title: 'T13 Riparian forest: where predicted' })
    const url = new URL(only.tiles_url.replace('{z}/{x}/{y}', '9/1/2'), 'http://x')
    expect(url.pathname).toBe('/tiles/habitat.l3/tiles/WebMercatorQuad/9/1/2.png')
    expect(url.searchParams.get('expression')).toBe('(b1==30)*1')
    expect(JSON.parse(url.searchParams.get('colormap'))).toEqual({ 0: [0, 0, 0, 0], 1: [150, 224, 168, 255] })
    expect(only.legend.items).toEqual([{ value: 1, label: 'T13 Riparian forest', color: '#96e0a8' }])
    expect(classOnlyLayer(layer, 'X99')).toBeNull()
  })
})
