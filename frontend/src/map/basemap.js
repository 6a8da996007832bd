/** The basemap: OpenStreetMap tiles, replaced by bundled country outlines when OSM is unreachable. */
import L from 'leaflet'
import { decideBasemap, FALLBACK_DEFAULTS } from './fallback.js'
import { countriesGeoJSON } from './outlines.js'

export const OSM_URL = 'https://tile.openstreetmap.org/{z}/{x}/{y}.png'
const OSM_ATTRIBUTION =
  '&copy; <a href="https://www.openstreetmap.org/copyright">OpenStreetMap</a> contributors'
const OFFLINE_ATTRIBUTION = 'Outlines: Natural Earth (world-atlas)'

/** Pane under the tile pane (200) so the outlines stay below the data overlay. */
export const BASEMAP_PANE = 'basemap'

/**
 * Add the basemap to `map`. `onChange(mode, error)` hears 'pending', then 'osm' or 'offline'
 * (with an error if even the offline outlines failed to load). Returns `{ mode(), destroy() }`.
 */
export function attachBasemap(map, { onChange = () => {}, osmUrl = OSM_URL, ...options } = {}) {
  const { timeoutMs } = { ...FALLBACK_DEFAULTS, ...options }
  const counts = { loaded: 0, failed: 0 }
  const startedAt = Date.now()
  let mode = 'pending'
  let offlineLayer = null
  let timer = null
  let destroyed = false

  if (!map.getPane(BASEMAP_PANE)) map.createPane(BASEMAP_PANE).style.zIndex = 150

  const osm = L.tileLayer(osmUrl, {
    maxZoom: 19,
    attribution: OSM_ATTRIBUTION,
    className: 'geoflora-basemap-osm',
  })

  function update() {
    if (mode !== 'pending' || destroyed) return
    const next = decideBasemap(
      { ...counts, elapsedMs: Date.now() - startedAt, online: navigator.onLine },
      options,
    )
    if (next === 'pending') return
    mode = next
    clearTimeout(timer)
    if (mode === 'offline') switchToOffline()
    else onChange(mode)
  }

  async function switchToOffline() {
    map.removeLayer(osm)
    map.getContainer().classList.add('is-offline-basemap')
    try {
      // Loaded on demand: most sessions have OSM and never need the outlines.
      const { default: topology } = await import('world-atlas/countries-50m.json')
      if (destroyed) return
      offlineLayer = L.geoJSON(countriesGeoJSON(topology), {
        pane: BASEMAP_PANE,
        interactive: false,
        attribution: OFFLINE_ATTRIBUTION,
        style: {
          color: '#9aa79c',
          weight: 0.8,
          fillColor: '#f3f1ea',
          fillOpacity: 1,
        },
      }).addTo(map)
      onChange('offline')
    } catch (err) {
      onChange('offline', new Error(`Offline basemap failed to load: ${err.message}`))
    }
  }

  osm.on('tileload', () => {
    counts.loaded += 1
    update()
  })
  osm.on('tileerror', () => {
    counts.failed += 1
    update()
  })
  timer = setTimeout(update, timeoutMs)
  osm.addTo(map)
  onChange(mode)
  update()

  return {
    mode: () => mode,
    destroy() {
      destroyed = true
      clearTimeout(timer)
      osm.remove()
      offlineLayer?.remove()
    },
  }
}
