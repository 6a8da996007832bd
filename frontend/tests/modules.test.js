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
    expect(moduleOfLayer(layers[8])).toBe('species')
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
