/**
 * The Leaflet map: basemap, the selected layer's overlay, report areas and drawing, clicks for the
 * values at a point, and the view for permalinks. Components hold the returned handle (markRaw).
 */
import L from 'leaflet'
import { sameBounds, toLatLngCorners } from '../catalog.js'
import { attachAreas } from './areas.js'
import { attachBasemap } from './basemap.js'
import { createOverlay } from './overlay.js'

const EUROPE_VIEW = { center: [52, 10], zoom: 4 }

/**
 * Create the map in `element`. Callbacks: `onBasemap(mode, error)`, `onOverlayStatus(status)`,
 * `onArea(geometry, how, tileId)`, `onDrawMode(mode)`, `onPoint({lat, lng})` (a click outside any
 * drawing), `onView({lat, lng, zoom})` (after each move). `initialView` skips fitting to the layer.
 */
export function createMapView(
  element,
  {
    onBasemap = () => {},
    onOverlayStatus = () => {},
    onArea = () => {},
    onDrawMode = () => {},
    onPoint = () => {},
    onView = () => {},
    initialView = null,
  } = {},
) {
  const map = L.map(element, { minZoom: 2, maxZoom: 19, worldCopyJump: true })
  if (initialView) map.setView([initialView.lat, initialView.lng], initialView.zoom)
  else map.setView(EUROPE_VIEW.center, EUROPE_VIEW.zoom)
  map.attributionControl.setPrefix('<a href="https://leafletjs.com">Leaflet</a>')
  L.control.scale({ imperial: false }).addTo(map)
  const basemap = attachBasemap(map, { onChange: onBasemap })
  const areas = attachAreas(map, { onArea, onMode: onDrawMode })

  // The map's box changes when the report panel opens or the phone rotates.
  const resizeObserver = typeof ResizeObserver === 'undefined' ? null : new ResizeObserver(() => map.invalidateSize())
  resizeObserver?.observe(element)

  let overlay = null
  let shownLayer = null
  let keepView = Boolean(initialView)
  let marker = null

  map.on('moveend', () => {
    const c = map.getCenter()
    onView({ lat: c.lat, lng: c.lng, zoom: map.getZoom() })
  })
  map.on('click', (e) => {
    if (e.pickedMetatile || areas.mode() || map.pm.globalDrawModeEnabled()) return
    onPoint({ lat: e.latlng.lat, lng: e.latlng.lng })
  })

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
    // Keep the user's view when the new layer covers the same region as the last one, and on the
    // first layer when a permalink gave the view.
    if (keepView) keepView = false
    else if (overlay.bounds && !sameBounds(previous?.bounds, layer.bounds)) {
      map.fitBounds(overlay.bounds, { padding: [24, 24] })
    }
  }

  /** Mark the clicked point and open a popup with `content` (a DOM node or text). */
  function showPoint(latlng, content) {
    marker?.remove()
    marker = L.circleMarker(latlng, { radius: 5, color: '#111', weight: 2, fillColor: '#fff', fillOpacity: 1, pmIgnore: true })
      .addTo(map)
      .bindPopup(content, { maxWidth: 340, maxHeight: 280, className: 'geoflora-values-popup', autoPan: true })
      .openPopup()
    marker.on('popupclose', () => {
      marker?.remove()
      marker = null
    })
  }

  return {
    map,
    showLayer,
    showPoint,
    setOpacity: (value) => overlay?.setOpacity(value),
    setView: (view) => map.setView([view.lat, view.lng], view.zoom),
    /** Fit catalog-style bounds [west, south, east, north]. */
    fitBounds: (bounds) => {
      const corners = toLatLngCorners(bounds)
      if (corners) map.fitBounds(corners, { padding: [24, 24] })
    },
    areas,
    resize: () => map.invalidateSize(),
    destroy() {
      resizeObserver?.disconnect()
      basemap.destroy()
      map.remove()
    },
  }
}
