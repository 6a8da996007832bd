/** Application state: the layer catalog, the selected layer and how it is shown. */
import { computed, reactive } from 'vue'
import * as api from './api.js'
import { findLayer, firstLayerId, groupLayersByKind } from './catalog.js'

/** Make a store; `client` is the API module (tests pass a fake). */
export function createStore(client = api) {
  const state = reactive({
    status: 'idle', // idle | loading | ready | error
    error: null,
    run: null,
    layers: [],
    selectedId: null,
    opacity: 0.8,
    health: null,
    healthError: null,
  })

  const groups = computed(() => groupLayersByKind(state.layers))
  const selectedLayer = computed(() => findLayer(state.layers, state.selectedId))

  /** Fetch the catalog; keeps the selection when the layer still exists, else picks the first. */
  async function loadCatalog() {
    state.status = 'loading'
    state.error = null
    try {
      const catalog = await client.getLayers()
      state.run = catalog.run
      state.layers = catalog.layers
      if (!findLayer(state.layers, state.selectedId)) state.selectedId = firstLayerId(state.layers)
      state.status = 'ready'
    } catch (err) {
      state.status = 'error'
      state.error = `Could not load the layers. ${err.message || err}`
    }
  }

  /** Fetch the API's health line for the About panel. */
  async function loadHealth() {
    try {
      state.health = await client.getHealth()
      state.healthError = null
    } catch (err) {
      state.health = null
      state.healthError = err.message || String(err)
    }
  }

  function selectLayer(id) {
    if (findLayer(state.layers, id)) state.selectedId = id
  }

  function setOpacity(value) {
    const number = Number(value)
    if (Number.isFinite(number)) state.opacity = Math.min(1, Math.max(0, number))
  }

  return { state, groups, selectedLayer, loadCatalog, loadHealth, selectLayer, setOpacity }
}

/** The store the app uses. */
export const store = createStore()
