/** The selected data layer: its tile overlay plus the outline of the region it covers. */
import L from 'leaflet'
import { toLatLngCorners } from '../catalog.js'

/** Class on the overlay's tile container; the browser smoke test looks for it. */
export const OVERLAY_CLASS = 'geoflora-overlay'

/**
 * Build the overlay for a catalog layer. `onStatus({state, errors})` hears 'loading' and
 * 'loaded' with the count of tiles that failed. Returns `{ group, bounds, setOpacity }`.
 */
export function createOverlay(layer, opacity, { onStatus = () => {} } = {}) {
  const corners = toLatLngCorners(layer.bounds)
  const bounds = corners ? L.latLngBounds(corners) : null
  let errors = 0

  // tiles_url is a ready Leaflet template from the catalog: used as given.
  const tiles = L.tileLayer(layer.tiles_url, {
    opacity,
    bounds: bounds ?? undefined,
    // Below minzoom, scale up minzoom tiles rather than ask for zooms the layer does not serve;
    // above maxzoom, stretch maxzoom tiles.
    minNativeZoom: layer.minzoom ?? undefined,
    maxNativeZoom: layer.maxzoom ?? undefined,
    maxZoom: 19,
    className: OVERLAY_CLASS,
    attribution: 'GeoFlora',
  })
  tiles.on('loading', () => {
    errors = 0
    onStatus({ state: 'loading', errors })
  })
  tiles.on('tileerror', () => {
    errors += 1
  })
  tiles.on('load', () => onStatus({ state: 'loaded', errors }))

  const group = L.layerGroup([tiles])
  if (bounds) {
    group.addLayer(
      L.rectangle(bounds, {
        color: '#1b5e20',
        weight: 2,
        dashArray: '6 4',
        fill: false,
        interactive: false,
      }),
    )
  }

  return {
    group,
    bounds,
    setOpacity: (value) => tiles.setOpacity(value),
  }
}
