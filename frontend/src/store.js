/**
 * Application state: the catalog, the module and layer shown, the report areas, fact sheets, the
 * species search, the habitat tree and point values, with their actions. Plain reactive state;
 * components stay thin and reach the API only through these actions.
 */
import { computed, reactive } from 'vue'
import * as api from './api.js'
import { findLayer, firstLayerId, groupLayersByKind } from './catalog.js'
import { featureInfoRows, featureInfoUrl, queryLayers } from './featureInfo.js'
import { latestRequest } from './latestRequest.js'
import { MODULE_DEFAULT_LAYER, classOnlyLayer, mainLayerId, moduleOfLayer, uncertaintyLayerId } from './modules.js'

/** Make a store; `client` is the API module (tests pass a fake). */
export function createStore(client = api) {
  const state = reactive({
    status: 'idle', // idle | loading | ready | error
    error: null,
    run: null,
    layers: [],
    selectedId: null,
    opacity: 0.8,
    uncertainty: false,
    module: 'home',
    view: null,
    health: null,
    healthError: null,
    // Report slots: 'a' is the area of the report panel, 'b' the one compared with it.
    reports: { a: emptySlot(), b: emptySlot() },
    comparison: null,
    comparisonError: null,
    speciesSearch: emptySearch(), // the species browser: GET /api/species?q=
    habitatTree: { nodes: [], error: null }, // the habitat browser: GET /api/habitats
    species: null, // fact sheet: GET /api/species/{id}
    speciesError: null,
    habitat: null, // fact sheet: GET /api/habitats/{code} plus its share of the map
    habitatError: null,
    point: null, // {lat, lng, rows, error, loading}
    classOnly: false, // the habitat fact sheet's "only this habitat" map
  })

  // Only the newest request of each kind may write its answer: a slow old one is dropped.
  const reportRequests = { a: latestRequest(), b: latestRequest() }
  const speciesSearches = latestRequest()
  const habitatTreeRequests = latestRequest()
  const groups = computed(() => groupLayersByKind(state.layers))
  const selectedLayer = computed(() => findLayer(state.layers, state.selectedId))
  /** The layer drawn on the map: the selected one, or its uncertainty layer when toggled on. */
  const shownLayer = computed(() => {
    if (state.classOnly && state.habitat?.layer === state.selectedId) {
      const only = classOnlyLayer(findLayer(state.layers, state.selectedId), state.habitat.code)
      if (only) return only
    }
    const partner = state.uncertainty ? uncertaintyLayerId(state.layers, state.selectedId) : null
    return findLayer(state.layers, partner ?? state.selectedId)
  })
  const uncertaintyAvailable = computed(() => Boolean(uncertaintyLayerId(state.layers, state.selectedId)))

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

  /** Show a layer (an uncertainty layer id selects its main layer with the toggle on). */
  function selectLayer(id) {
    const main = mainLayerId(state.layers, id)
    if (!findLayer(state.layers, main)) return
    if (main !== id) state.uncertainty = true
    state.selectedId = main
  }

  function setOpacity(value) {
    const number = Number(value)
    if (Number.isFinite(number)) state.opacity = Math.min(1, Math.max(0, number))
  }

  function setUncertainty(on) {
    state.uncertainty = Boolean(on)
  }

  /** Open a module; its default layer is shown unless a layer of the module already is. */
  function setModule(module) {
    state.module = module
    if (moduleOfLayer(selectedLayer.value) === module) return
    const fallback = MODULE_DEFAULT_LAYER[module]
    if (fallback && findLayer(state.layers, fallback)) {
      state.selectedId = fallback
      state.uncertainty = false
    }
  }

  // ---- species search and habitat tree ----------------------------------------------------------
  /** Search species by name (an empty text clears the hits); only the newest search shows. */
  async function searchSpecies(text) {
    const search = speciesSearches.start()
    const q = String(text ?? '').trim()
    if (!q) {
      state.speciesSearch = emptySearch()
      return
    }
    state.speciesSearch.searching = true
    try {
      const hits = await client.searchSpecies(q)
      if (search.current) state.speciesSearch = { hits, error: null, searching: false }
    } catch (err) {
      if (search.current) state.speciesSearch = { ...state.speciesSearch, error: err.message || String(err), searching: false }
    }
  }

  /** Fetch the EUNIS habitat tree (levels 1 to 3) for the habitat browser. */
  async function loadHabitatTree() {
    const request = habitatTreeRequests.start()
    state.habitatTree = { nodes: [], error: null }
    try {
      const nodes = await client.getHabitatTree()
      if (request.current) state.habitatTree = { nodes, error: null }
    } catch (err) {
      if (request.current) state.habitatTree = { nodes: [], error: err.message || String(err) }
    }
  }

  // ---- fact sheets -------------------------------------------------------------------------------
  /** Open a species' fact sheet; `show` also puts its probability map on the map. */
  async function openSpecies(id, { show = true } = {}) {
    state.speciesError = null
    try {
      state.species = await client.getSpecies(id)
      const layer = state.species.layers?.find((l) => !l.endsWith('.presence')) ?? state.species.layers?.[0]
      if (layer && show) selectLayer(layer)
    } catch (err) {
      state.species = null
      state.speciesError = err.message || String(err)
    }
  }

  function closeSpecies() {
    state.species = null
  }

  /** Open a habitat's fact sheet; `show` also puts the habitat map of its level on the map. */
  async function openHabitat(code, level, { show = true } = {}) {
    state.habitatError = null
    try {
      const habitat = await client.getHabitat(code)
      const layerId = `habitat.l${habitat.level ?? level}`
      const layer = findLayer(state.layers, layerId)
      let share = null
      if (layer) {
        if (show) {
          selectLayer(layerId)
          state.uncertainty = false
        }
        share = await habitatShare(layer, habitat.code).catch(() => null)
      }
      // a level-3 habitat's suitability layer: its probability where it is among each cell's top classes
      const suitability = findLayer(state.layers, `habitat.suitability.${habitat.code}`)?.id ?? null
      state.habitat = { ...habitat, layer: layer?.id ?? null, share, suitability }
      if (!layer) state.classOnly = false
    } catch (err) {
      state.habitat = null
      state.habitatError = err.message || String(err)
    }
  }

  // Share of the run's mapped cells in this class, from the layer's class histogram.
  async function habitatShare(layer, code) {
    const item = layer.legend?.items?.find((i) => i.code === code)
    if (!item) return 0
    const stats = await client.getClassShares(layer.id)
    const band = Object.values(stats)[0]
    const [counts, values] = band?.histogram ?? [[], []]
    const total = counts.reduce((a, b) => a + b, 0)
    const k = values.indexOf(item.value)
    return total ? (k >= 0 ? counts[k] / total : 0) : null
  }

  function closeHabitat() {
    state.habitat = null
    state.classOnly = false
  }

  /** Show only the open habitat's cells on its map (or the whole map again). */
  function setClassOnly(on) {
    state.classOnly = Boolean(on)
    if (on && state.habitat?.layer) {
      state.selectedId = state.habitat.layer
      state.uncertainty = false
    }
  }

  // ---- values at a point -------------------------------------------------------------------------
  async function queryPoint({ lat, lng }) {
    const names = queryLayers(state.layers, shownLayer.value?.id)
    state.point = { lat, lng, rows: [], error: null, loading: true }
    if (!names.length) {
      state.point = { ...state.point, loading: false, error: 'No layer to query.' }
      return state.point
    }
    try {
      const rows = featureInfoRows(await client.getFeatureInfo(featureInfoUrl(names, lng, lat)))
      state.point = { lat, lng, rows, error: null, loading: false }
    } catch (err) {
      state.point = { lat, lng, rows: [], error: err.message || String(err), loading: false }
    }
    return state.point
  }

  // ---- reports -----------------------------------------------------------------------------------
  /** Compute (or fetch from the store) the report of `geometry` into slot 'a' or 'b'. */
  async function requestReport(slot, geometry, label = '') {
    const request = reportRequests[slot].start()
    state.reports[slot] = { ...emptySlot(), status: 'computing', geometry, label }
    if (slot === 'a') clearComparison()
    try {
      const report = await client.createReport(geometry, {
        onProgress: (progress) => {
          if (request.current) state.reports[slot].progress = progress
        },
      })
      if (!request.current) return // superseded by a newer area, or cleared
      state.reports[slot] = { ...state.reports[slot], status: 'done', report, geometry: report.geometry ?? geometry }
      if (state.reports.a.report && state.reports.b.report) await loadComparison()
    } catch (err) {
      if (!request.current) return
      state.reports[slot] = { ...state.reports[slot], status: 'error', error: err.message || String(err) }
    }
  }

  /** Load a stored report by id (permalinks). */
  async function loadReport(slot, id) {
    const request = reportRequests[slot].start()
    state.reports[slot] = { ...emptySlot(), status: 'computing' }
    try {
      const report = await client.getReport(id)
      if (!request.current) return
      const label = `Shared area ${report.id.slice(0, 8)}`
      state.reports[slot] = { ...emptySlot(), status: 'done', report, geometry: report.geometry, label }
      if (state.reports.a.report && state.reports.b.report) await loadComparison()
    } catch (err) {
      if (!request.current) return
      state.reports[slot] = { ...emptySlot(), status: 'error', error: err.message || String(err) }
    }
  }

  /** Close a report area, dropping its pending answer; closing 'a' closes 'b' too. */
  function clearReport(slot) {
    for (const s of slot === 'a' ? ['a', 'b'] : [slot]) {
      reportRequests[s].cancel()
      state.reports[s] = emptySlot()
    }
    clearComparison()
  }

  function clearComparison() {
    state.comparison = null
    state.comparisonError = null
  }

  async function loadComparison() {
    const a = state.reports.a.report?.id
    const b = state.reports.b.report?.id
    if (!a || !b) return
    if (a === b) {
      state.comparisonError = 'Both areas are the same: pick a different second area.'
      return
    }
    try {
      state.comparison = await client.compareReports(a, b)
      state.comparisonError = null
    } catch (err) {
      state.comparison = null
      state.comparisonError = err.message || String(err)
    }
  }

  return {
    state,
    groups,
    selectedLayer,
    shownLayer,
    uncertaintyAvailable,
    loadCatalog,
    loadHealth,
    selectLayer,
    setOpacity,
    setUncertainty,
    setModule,
    openSpecies,
    closeSpecies,
    openHabitat,
    closeHabitat,
    setClassOnly,
    searchSpecies,
    loadHabitatTree,
    queryPoint,
    requestReport,
    loadReport,
    clearReport,
  }
}

function emptySlot() {
  return { status: 'idle', report: null, geometry: null, error: null, progress: null, label: '' }
}

function emptySearch() {
  return { hits: [], error: null, searching: false }
}

/** The store the app uses. */
export const store = createStore()
