/**
 * Areas on the map: drawing rectangles and polygons (leaflet-geoman), the report areas A and B, and
 * picking a meta-tile by clicking. The drawn shape is handed over as GeoJSON and then shown as area.
 */
import L from 'leaflet'
import '@geoman-io/leaflet-geoman-free'
import '@geoman-io/leaflet-geoman-free/dist/leaflet-geoman.css'
import { metatileAt, metatilePolygon } from '../area.js'

export const AREA_STYLES = {
  a: { color: '#0b57d0', weight: 3, fillOpacity: 0.08, className: 'geoflora-area geoflora-area--a' },
  b: { color: '#a3195b', weight: 3, dashArray: '8 5', fillOpacity: 0.06, className: 'geoflora-area geoflora-area--b' },
}
const DRAW_STYLE = { color: '#0b57d0', weight: 2, fillOpacity: 0.1 }

/**
 * Attach drawing to `map`. `onArea(geometry, how)` hears each finished shape (how: 'rectangle',
 * 'polygon' or 'metatile'); `onMode(mode)` hears the drawing mode (null when none).
 * Returns `{ draw(shape), pickMetatile(), cancel(), showArea(slot, geometry, fit), mode() }`.
 */
export function attachAreas(map, { onArea = () => {}, onMode = () => {} } = {}) {
  map.pm.setGlobalOptions({ templineStyle: DRAW_STYLE, hintlineStyle: { ...DRAW_STYLE, dashArray: '5 5' }, pathOptions: DRAW_STYLE })
  map.pm.addControls({
    position: 'topleft',
    drawMarker: false,
    drawCircleMarker: false,
    drawPolyline: false,
    drawCircle: false,
    drawText: false,
    editMode: false,
    dragMode: false,
    cutPolygon: false,
    removalMode: false,
    rotateMode: false,
  })
  const shown = { a: null, b: null }
  let mode = null
  const setMode = (next) => {
    mode = next
    map.getContainer().dataset.drawMode = next ?? ''
    onMode(next)
  }

  map.on('pm:drawstart', (e) => setMode(e.shape === 'Rectangle' ? 'rectangle' : 'polygon'))
  map.on('pm:drawend', () => {
    if (mode !== 'metatile') setMode(null)
  })
  map.on('pm:create', (e) => {
    const geometry = e.layer.toGeoJSON().geometry
    e.layer.remove()
    onArea(geometry, e.shape === 'Rectangle' ? 'rectangle' : 'polygon')
  })

  function pick(latlng) {
    const id = metatileAt(latlng.lng, latlng.lat)
    setMode(null)
    map.getContainer().classList.remove('is-picking')
    onArea(metatilePolygon(id), 'metatile', id)
  }
  map.on('click', (e) => {
    if (mode !== 'metatile') return
    // The map's other click handler (values at a point) skips clicks that picked a meta-tile.
    e.pickedMetatile = true
    pick(e.latlng)
  })
  // Keyboard: with the map focused, Enter picks the meta-tile at the centre of the map.
  map.getContainer().addEventListener('keydown', (event) => {
    if (mode === 'metatile' && event.key === 'Enter') {
      event.preventDefault()
      pick(map.getCenter())
    }
  })

  function cancel() {
    map.pm.disableDraw()
    map.getContainer().classList.remove('is-picking')
    setMode(null)
  }

  return {
    draw(shape) {
      cancel()
      map.pm.enableDraw(shape === 'rectangle' ? 'Rectangle' : 'Polygon', { snappable: false, finishOn: null })
    },
    pickMetatile() {
      cancel()
      map.getContainer().classList.add('is-picking')
      setMode('metatile')
    },
    cancel,
    mode: () => mode,
    /** The map's visible extent as a GeoJSON Polygon (a report on what is on screen). */
    viewPolygon() {
      const b = map.getBounds()
      const [w, s, e, n] = [b.getWest(), b.getSouth(), b.getEast(), b.getNorth()].map((v) => Math.round(v * 1e6) / 1e6)
      return { type: 'Polygon', coordinates: [[[w, s], [e, s], [e, n], [w, n], [w, s]]] }
    },
    /** Show (or with null, remove) the area of report slot 'a' or 'b'. */
    showArea(slot, geometry, fit = false) {
      shown[slot]?.remove()
      shown[slot] = null
      if (!geometry) return
      shown[slot] = L.geoJSON(geometry, { style: AREA_STYLES[slot], interactive: false, pmIgnore: true }).addTo(map)
      if (!fit) return
      // Fit every shown area, so a comparison shows both.
      const bounds = L.latLngBounds([])
      for (const layer of Object.values(shown)) if (layer) bounds.extend(layer.getBounds())
      map.fitBounds(bounds, { padding: [32, 32], maxZoom: 15 })
    },
  }
}
