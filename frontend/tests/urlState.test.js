import { describe, expect, it } from 'vitest'
import { createStore } from '../src/store.js'
import { applyPermalink, permalinkState, writeLocation } from '../src/urlState.js'

const layers = [
  { id: 'indicator.richness', kind: 'indicator', title: 'Species richness' },
  { id: 'indicator.richness.ci', kind: 'indicator-uncertainty', title: 'Richness: 2-sigma' },
  { id: 'trait.height', kind: 'trait', title: 'Height' },
]
const ID = 'ac236daad69bbbd4c0e07cf90f88798e'

function fakeClient(calls) {
  return {
    getLayers: async () => ({ run: { id: 'r1' }, layers }),
    getHealth: async () => ({}),
    getReport: async (id) => {
      calls.push(['report', id])
      return { id, geometry: { type: 'MultiPolygon', coordinates: [] } }
    },
    getSpecies: async (id) => {
      calls.push(['species', id])
      return { id, layers: [] }
    },
  }
}

describe('URL state', () => {
  it('applies a link: module, layer, uncertainty, opacity, the stored report and fact sheets', async () => {
    const calls = []
    const store = createStore(fakeClient(calls))
    await store.loadCatalog()
    applyPermalink(store, { module: 'traits', layer: 'indicator.richness', uncertainty: true, opacity: 0.3, report: ID, species: 7 })
    await new Promise((r) => setTimeout(r, 0))
    expect(store.state.module).toBe('traits')
    expect(store.shownLayer.value.id).toBe('indicator.richness.ci')
    expect(store.state.opacity).toBe(0.3)
    expect(calls).toEqual([['report', ID], ['species', 7]])
    expect(store.state.reports.a.report.id).toBe(ID)
    expect(permalinkState(store)).toMatchObject({ module: 'traits', layer: 'indicator.richness', report: ID, species: 7, compare: null })
  })

  it('replaces the hash without a new history entry, and only when it changes', async () => {
    const store = createStore(fakeClient([]))
    await store.loadCatalog()
    store.state.view = { lat: 48.4, lng: 8.5, zoom: 11 }
    const replaced = []
    const location = { pathname: '/', search: '', hash: '' }
    const history = { replaceState: (_, __, url) => replaced.push(url) }
    writeLocation(store, history, location)
    expect(replaced).toEqual(['/#l=indicator.richness&v=11%2F48.40000%2F8.50000'])
    location.hash = '#l=indicator.richness&v=11%2F48.40000%2F8.50000'
    writeLocation(store, history, location)
    expect(replaced).toHaveLength(1)
  })
})
