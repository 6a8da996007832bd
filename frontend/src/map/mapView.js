/** The Leaflet map: basemap plus the selected layer's overlay. Components hold the returned handle. */
import L from 'leaflet'
import { sameBounds } from '../catalog.js'
import { attachBasemap } from './basemap.js'
import { createOverlay } from './overlay.js'

const EUROPE_VIEW = { center: [52, 10], zoom: 4 }

/**
 * Create the map in `element`. Callbacks: `onBasemap(mode, error)`, `onOverlayStatus(status)`.
 * Returns `{ map, showLayer(layer, opacity), setOpacity(value), resize(), destroy() }`.
 */
export function createMapView(element, { onBasemap = () => {}, onOverlayStatus = () => {} } = {}) {
  const map = L.map(element, { minZoom: 2, maxZoom: 19, worldCopyJump: true }).setView(
    EUROPE_VIEW.center,
    EUROPE_VIEW.zoom,
  )
  map.attributionControl.setPrefix('<a href="https://leafletjs.com">Leaflet</a>')
  L.control.scale({ imperial: false }).addTo(map)
  const basemap = attachBasemap(map, { onChange: onBasemap })

  let overlay = null
  let shownLayer = null

  function showLayer(layer, opacity) {
    if (overlay) map.removeLayer(overlay.group)
    overlay = null
    const previous = shownLayer
    shownLayer = layer ?? null
    if (!layer) {
      onOverlayStatus({ state: 'none', errors: 0 })
      return
    }
    overlay = createOverlay(layer, opacity, { onStatus: onOverlayStatus })
    overlay.group.addTo(map)
    // Keep the user's view when the new layer covers the same region as the last one.
    if (overlay.bounds && !sameBounds(previous?.bounds, layer.bounds)) {
      map.fitBounds(overlay.bounds, { padding: [24, 24] })
    }
  }

  return {
    map,
    showLayer,
    setOpacity: (value) => overlay?.setOpacity(value),
    resize: () => map.invalidateSize(),
    destroy() {
      basemap.destroy()
      map.remove()
    },
  }
}
