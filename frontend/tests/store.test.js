import { describe, expect, it } from 'vitest'
import { moduleOfLayer } from '../src/modules.js'
import { createStore } from '../src/store.js'

const layers = [
  { id: 'indicator.richness', kind: 'indicator', title: 'Species richness' },
  { id: 'trait.height', kind: 'trait', title: 'Plant height' },
]
const fakeApi = (overrides = {}) => ({
  getLayers: async () => ({ run: { id: 'r1' }, layers }),
  getHealth: async () => ({ status: 'ok', version: '0.1.0', live_run: 'r1' }),
  ...overrides,
})

describe('store', () => {
  it('loads the catalog and selects the first layer', async () => {
    const store = createStore(fakeApi())
    await store.loadCatalog()
    expect(store.state.status).toBe('ready')
    expect(store.state.run.id).toBe('r1')
    expect(store.selectedLayer.value.id).toBe('indicator.richness')
    expect(store.groups.value.map((g) => g.kind)).toEqual(['indicator', 'trait'])
  })

  it('keeps the selection across reloads when the layer still exists', async () => {
    const store = createStore(fakeApi())
    await store.loadCatalog()
    store.selectLayer('trait.height')
    await store.loadCatalog()
    expect(store.state.selectedId).toBe('trait.height')
  })

  it('ignores unknown ids and clamps opacity', async () => {
    const store = createStore(fakeApi())
    await store.loadCatalog()
    store.selectLayer('nope')
    expect(store.state.selectedId).toBe('indicator.richness')
    store.setOpacity(1.5)
    expect(store.state.opacity).toBe(1)
    store.setOpacity('0.25')
    expect(store.state.opacity).toBe(0.25)
  })

  it('keeps API errors for the UI', async () => {
    const store = createStore(
      fakeApi({
        getLayers: async () => {
          throw new Error('/api/layers answered 500')
        },
        getHealth: async () => {
          throw new Error('down')
        },
      }),
    )
    await store.loadCatalog()
    await store.loadHealth()
    expect(store.state.status).toBe('error')
    expect(store.state.error).toBe('Could not load the layers. /api/layers answered 500')
    expect(store.state.healthError).toBe('down')
  })
})

describe('store: modules, reports, fact sheets, points', () => {
  const catalog = [
    { id: 'indicator.richness', kind: 'indicator', title: 'Species richness', wms_layer: 'indicator.richness', legend: { type: 'continuous' } },
    { id: 'indicator.richness.ci', kind: 'indicator-uncertainty', title: 'Richness: 2-sigma', wms_layer: 'indicator.richness.ci', legend: {} },
    { id: 'habitat.l3', kind: 'habitat', title: 'Habitat 3', wms_layer: 'habitat.l3', legend: { type: 'categorical', items: [{ value: 30, code: 'T13' }, { value: 2, code: 'C2.3' }] } },
    { id: 'habitat.suitability.T13', kind: 'habitat-suitability', title: 'Suitability: T13', wms_layer: 'habitat.suitability.T13', legend: { type: 'continuous' } },
    { id: 'trait.height', kind: 'trait', title: 'Height', wms_layer: 'trait.height', legend: { type: 'continuous' } },
    { id: 'species.24', kind: 'species', title: 'Quercus', wms_layer: 'species.24', legend: { type: 'continuous' } },
  ]
  const client = (overrides = {}) =>
    fakeApi({ getLayers: async () => ({ run: { id: 'r1' }, layers: catalog }), ...overrides })

  it('opens a module on its default layer and shows the uncertainty layer when asked', async () => {
    const store = createStore(client())
    await store.loadCatalog()
    store.setModule('traits')
    expect(store.state.selectedId).toBe('trait.height')
    store.setModule('indicators')
    expect(store.shownLayer.value.id).toBe('indicator.richness')
    expect(store.uncertaintyAvailable.value).toBe(true)
    store.setUncertainty(true)
    expect(store.shownLayer.value.id).toBe('indicator.richness.ci')
    store.selectLayer('trait.height')
    expect(store.uncertaintyAvailable.value).toBe(false)
    expect(store.shownLayer.value.id).toBe('trait.height')
    store.selectLayer('indicator.richness.ci') // a permalink to the uncertainty layer
    expect([store.state.selectedId, store.state.uncertainty]).toEqual(['indicator.richness', true])
  })

  it('computes a report, then a second one and their comparison', async () => {
    const compared = []
    const store = createStore(
      client({
        createReport: async (geometry) => ({ id: geometry.id, geometry: { type: 'MultiPolygon' } }),
        compareReports: async (a, b) => {
          compared.push([a, b])
          return { areas: [{}, {}] }
        },
      }),
    )
    await store.requestReport('a', { id: 'A' }, 'Drawn rectangle')
    expect(store.state.reports.a).toMatchObject({ status: 'done', label: 'Drawn rectangle', report: { id: 'A' } })
    expect(store.state.reports.a.geometry).toEqual({ type: 'MultiPolygon' })
    await store.requestReport('b', { id: 'B' })
    expect(compared).toEqual([['A', 'B']])
    expect(store.state.comparison).toEqual({ areas: [{}, {}] })
    store.clearReport('a')
    expect([store.state.reports.a.status, store.state.reports.b.status, store.state.comparison]).toEqual(['idle', 'idle', null])
  })

  it('keeps only the newest report when areas are drawn quickly', async () => {
    let release
    const slow = new Promise((resolve) => (release = resolve))
    const store = createStore(
      client({ createReport: async (g) => (g.id === 'old' ? slow.then(() => ({ id: 'old' })) : { id: 'new' }) }),
    )
    const first = store.requestReport('a', { id: 'old' })
    await store.requestReport('a', { id: 'new' })
    release()
    await first
    expect(store.state.reports.a.report.id).toBe('new')
  })

  it('shows report errors', async () => {
    const store = createStore(client({ createReport: async () => Promise.reject(new Error('outside the mapped region')) }))
    await store.requestReport('a', {})
    expect(store.state.reports.a).toMatchObject({ status: 'error', error: 'outside the mapped region' })
  })

  it('opens a species sheet on its map, and a habitat sheet with its share of the map', async () => {
    const store = createStore(
      client({
        getSpecies: async (id) => ({ id, name: 'Quercus', layers: ['species.24', 'species.24.presence'] }),
        getHabitat: async (code) => ({ code, name: 'Riparian forest', level: 3, mapped: true, children: [] }),
        getClassShares: async () => ({ b1: { histogram: [[750, 250], [30, 2]] } }),
      }),
    )
    await store.loadCatalog()
    await store.openSpecies(24)
    expect([store.state.species.name, store.state.selectedId]).toEqual(['Quercus', 'species.24'])
    await store.openHabitat('T13')
    expect(store.state.habitat).toMatchObject({ code: 'T13', layer: 'habitat.l3', share: 0.75, suitability: 'habitat.suitability.T13' })
    expect(store.state.selectedId).toBe('habitat.l3')
    store.selectLayer(store.state.habitat.suitability) // the sheet's "where this habitat is suitable"
    expect([store.shownLayer.value.id, moduleOfLayer(store.shownLayer.value)]).toEqual(['habitat.suitability.T13', 'habitats'])
    store.selectLayer('habitat.l3')
    await store.openSpecies(24, { show: false })
    expect(store.state.selectedId).toBe('habitat.l3')
  })

  it('reads the values at a clicked point', async () => {
    const urls = []
    const store = createStore(
      client({
        getFeatureInfo: async (url) => {
          urls.push(url)
          return { features: [{ id: 'indicator.richness', properties: { layer: 'indicator.richness', title: 'Species richness', value: 1.2, text: '1.2 species' } }] }
        },
      }),
    )
    await store.loadCatalog()
    await store.queryPoint({ lat: 48.4, lng: 8.5 })
    expect(store.state.point).toMatchObject({ loading: false, error: null, rows: [{ title: 'Species richness', text: '1.2 species', hasValue: true }] })
    expect(new URL(urls[0], 'http://x').searchParams.get('QUERY_LAYERS')).toBe('indicator.richness,habitat.l3,trait.height')
  })
})

// A promise with its resolve and reject handles, to answer requests in a chosen order.
function deferred() {
  let resolve, reject
  const promise = new Promise((res, rej) => ((resolve = res), (reject = rej)))
  return { promise, resolve, reject }
}

describe('store: latest request wins', () => {
  it('keeps the newest species search when an older one answers after it', async () => {
    const answers = { qu: deferred(), quer: deferred() }
    const store = createStore(fakeApi({ searchSpecies: (q) => answers[q].promise }))
    const older = store.searchSpecies(' qu ')
    const newer = store.searchSpecies('quer')
    expect(store.state.speciesSearch.searching).toBe(true)
    answers.quer.resolve([{ id: 24, name: 'Quercus robur' }])
    await newer
    answers.qu.resolve([{ id: 1, name: 'Quassia' }])
    await older
    expect(store.state.speciesSearch).toEqual({ hits: [{ id: 24, name: 'Quercus robur' }], error: null, searching: false })
  })

  it('drops the error of a superseded search and keeps the hits on an error', async () => {
    const answers = { a: deferred(), ab: deferred(), abc: deferred() }
    const store = createStore(fakeApi({ searchSpecies: (q) => answers[q].promise }))
    const first = store.searchSpecies('a')
    const second = store.searchSpecies('ab')
    answers.ab.resolve([{ id: 2, name: 'Abies alba' }])
    await second
    answers.a.reject(new Error('late failure'))
    await first
    expect(store.state.speciesSearch.error).toBe(null)
    const third = store.searchSpecies('abc')
    answers.abc.reject(new Error('/api/species answered 500'))
    await third
    expect(store.state.speciesSearch).toEqual({ hits: [{ id: 2, name: 'Abies alba' }], error: '/api/species answered 500', searching: false })
  })

  it('clears the hits on an empty search and ignores the search still under way', async () => {
    const pending = deferred()
    const store = createStore(fakeApi({ searchSpecies: () => pending.promise }))
    const search = store.searchSpecies('quer')
    await store.searchSpecies('  ')
    pending.resolve([{ id: 24, name: 'Quercus robur' }])
    await search
    expect(store.state.speciesSearch).toEqual({ hits: [], error: null, searching: false })
  })

  it('loads the habitat tree, newest load first', async () => {
    const loads = [deferred(), deferred()]
    let n = 0
    const store = createStore(fakeApi({ getHabitatTree: () => loads[n++].promise }))
    const older = store.loadHabitatTree()
    const newer = store.loadHabitatTree()
    loads[1].resolve([{ code: 'T', name: 'Forests', level: 1, mapped: true, children: [] }])
    await newer
    loads[0].reject(new Error('late failure'))
    await older
    expect(store.state.habitatTree).toEqual({ nodes: [{ code: 'T', name: 'Forests', level: 1, mapped: true, children: [] }], error: null })
  })

  it('drops the answer of a report whose area was closed meanwhile', async () => {
    const pending = deferred()
    const store = createStore(fakeApi({ createReport: () => pending.promise }))
    const request = store.requestReport('a', { id: 'A' })
    store.clearReport('a')
    pending.resolve({ id: 'A' })
    await request
    expect(store.state.reports.a).toMatchObject({ status: 'idle', report: null })
  })

  it('lets a drawn area win over a slower shared report in the same slot', async () => {
    const shared = deferred()
    const store = createStore(
      fakeApi({ getReport: () => shared.promise, createReport: async () => ({ id: 'drawn', geometry: { type: 'Polygon' } }) }),
    )
    const permalink = store.loadReport('a', 'shared-id')
    await store.requestReport('a', { type: 'Polygon' }, 'Drawn rectangle')
    shared.resolve({ id: 'shared-id', geometry: null })
    await permalink
    expect(store.state.reports.a).toMatchObject({ status: 'done', label: 'Drawn rectangle', report: { id: 'drawn' } })
  })
})
