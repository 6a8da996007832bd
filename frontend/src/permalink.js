/** Permalinks: the view, module, layer and area kept in the URL hash (plain, no Vue or Leaflet). */

export const MODULES = ['home', 'species', 'habitats', 'indicators', 'traits']
const REPORT_ID = /^[0-9a-f]{32}$/
const LAYER_ID = /^[\w.-]{1,128}$/
const HABITAT_CODE = /^[A-Za-z0-9.]{1,16}$/

/**
 * The hash (without '#') for `state`: {module, layer, view: {lat, lng, zoom}, opacity, uncertainty,
 * report, compare, species, habitat}. Missing or default values are left out so links stay short.
 */
export function encodePermalink(state = {}) {
  const params = new URLSearchParams()
  if (state.module && state.module !== 'home') params.set('m', state.module)
  if (state.layer) params.set('l', state.layer)
  const view = state.view
  if (view && [view.lat, view.lng, view.zoom].every(Number.isFinite)) {
    // 5 decimals = about 1 m, finer than the 50 m cells.
    params.set('v', `${Math.round(view.zoom)}/${view.lat.toFixed(5)}/${view.lng.toFixed(5)}`)
  }
  if (Number.isFinite(state.opacity) && state.opacity !== 0.8) params.set('o', String(round2(state.opacity)))
  if (state.uncertainty) params.set('u', '1')
  if (state.report) params.set('r', state.report)
  if (state.compare) params.set('c', state.compare)
  if (Number.isInteger(state.species)) params.set('sp', String(state.species))
  if (state.habitat) params.set('h', state.habitat)
  return params.toString()
}

/** Parse a hash (with or without '#'); anything malformed is dropped, never thrown. */
export function decodePermalink(hash) {
  const params = new URLSearchParams(String(hash || '').replace(/^#/, ''))
  const out = {}
  const module = params.get('m')
  if (MODULES.includes(module)) out.module = module
  const layer = params.get('l')
  if (layer && LAYER_ID.test(layer)) out.layer = layer
  const view = (params.get('v') || '').split('/').map(Number)
  if (view.length === 3 && view.every(Number.isFinite)) {
    const [zoom, lat, lng] = view
    if (zoom >= 0 && zoom <= 22 && Math.abs(lat) <= 90 && Math.abs(lng) <= 360) {
      out.view = { zoom: Math.round(zoom), lat, lng }
    }
  }
  const opacity = Number(params.get('o'))
  if (params.has('o') && Number.isFinite(opacity) && opacity >= 0 && opacity <= 1) out.opacity = opacity
  if (params.get('u') === '1') out.uncertainty = true
  for (const [key, name] of [['r', 'report'], ['c', 'compare']]) {
    const id = params.get(key)
    if (id && REPORT_ID.test(id)) out[name] = id
  }
  const species = Number(params.get('sp'))
  if (params.has('sp') && Number.isInteger(species) && species >= 0) out.species = species
  const habitat = params.get('h')
  if (habitat && HABITAT_CODE.test(habitat)) out.habitat = habitat
  return out
}

function round2(value) {
  return Math.round(value * 100) / 100
}
