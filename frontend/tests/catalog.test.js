import { describe, expect, it } from 'vitest'
import {
  firstLayerId,
  findLayer,
  groupLayersByKind,
  kindLabel,
  sameBounds,
  toLatLngCorners,
} from '../src/catalog.js'

const layer = (id, kind) => ({ id, kind, title: id })

describe('groupLayersByKind', () => {
  it('groups in the fixed kind order and keeps layer order inside a group', () => {
    const groups = groupLayersByKind([
      layer('trait.height', 'trait'),
      layer('indicator.richness', 'indicator'),
      layer('species.1', 'species'),
      layer('indicator.iucn', 'indicator'),
      layer('habitat.eunis3', 'habitat'),
    ])
    expect(groups.map((g) => g.kind)).toEqual(['species', 'habitat', 'indicator', 'trait'])
    expect(groups[2].layers.map((l) => l.id)).toEqual(['indicator.richness', 'indicator.iucn'])
    expect(groups[2].label).toBe('Biodiversity indicators')
  })

  it('puts unknown kinds last, alphabetically, with a readable label', () => {
    const groups = groupLayersByKind([
      layer('z', 'zeta'),
      layer('a', 'alpha'),
      layer('i', 'indicator'),
      { id: 'nokind', title: 'x' },
    ])
    expect(groups.map((g) => g.kind)).toEqual(['indicator', 'alpha', 'other', 'zeta'])
    expect(groups[1].label).toBe('Alpha')
  })

  it('returns no groups for no layers', () => {
    expect(groupLayersByKind([])).toEqual([])
    expect(groupLayersByKind(undefined)).toEqual([])
  })
})

describe('layer lookup', () => {
  const layers = [layer('indicator.richness', 'indicator'), layer('habitat.eunis3', 'habitat')]

  it('finds a layer by id or returns null', () => {
    expect(findLayer(layers, 'habitat.eunis3').kind).toBe('habitat')
    expect(findLayer(layers, 'nope')).toBeNull()
  })

  it('shows species richness first when the run has it', () => {
    expect(firstLayerId(layers)).toBe('indicator.richness')
  })

  it('otherwise picks the first layer as listed, not as sent', () => {
    const others = [layer('indicator.trees', 'indicator'), layer('habitat.eunis3', 'habitat')]
    expect(firstLayerId(others)).toBe('habitat.eunis3')
    expect(firstLayerId([])).toBeNull()
  })

  it('labels kinds', () => {
    expect(kindLabel('species')).toBe('Species')
    expect(kindLabel(undefined)).toBe('Other')
  })
})

describe('toLatLngCorners', () => {
  it('turns [west, south, east, north] into Leaflet corners', () => {
    expect(toLatLngCorners([10, 48, 10.7, 48.5])).toEqual([
      [48, 10],
      [48.5, 10.7],
    ])
  })

  it('clamps to the Web Mercator latitude range', () => {
    expect(toLatLngCorners([-180, -90, 180, 90])).toEqual([
      [-85, -180],
      [85, 180],
    ])
  })

  it('rejects missing or inverted boxes', () => {
    expect(toLatLngCorners(null)).toBeNull()
    expect(toLatLngCorners([1, 2, 3])).toBeNull()
    expect(toLatLngCorners([10, 48, 9, 49])).toBeNull()
    expect(toLatLngCorners([10, 'x', 11, 49])).toBeNull()
  })
})

describe('sameBounds', () => {
  it('compares boxes value by value', () => {
    expect(sameBounds([10, 48, 10.7, 48.5], [10, 48, 10.7, 48.5])).toBe(true)
    expect(sameBounds([10, 48, 10.7, 48.5], [10, 48, 10.8, 48.5])).toBe(false)
    expect(sameBounds(undefined, [10, 48, 10.7, 48.5])).toBe(false)
  })
})
