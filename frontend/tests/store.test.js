import { describe, expect, it } from 'vitest'
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
