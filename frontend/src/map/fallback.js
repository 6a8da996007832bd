/** When to give up on OpenStreetMap and draw the offline basemap (plain, no Leaflet). */

export const FALLBACK_DEFAULTS = {
  timeoutMs: 8000, // no OSM tile at all after this long: treat the network as gone
  maxErrors: 2, // this many failed OSM tiles before any loaded one: offline
}

/**
 * Decide the basemap from what the OSM tile layer has reported so far.
 * Returns 'osm' (a tile arrived), 'offline' (errors, timeout or the browser says offline)
 * or 'pending' (keep waiting).
 */
export function decideBasemap({ loaded = 0, failed = 0, elapsedMs = 0, online = true }, options = {}) {
  const { timeoutMs, maxErrors } = { ...FALLBACK_DEFAULTS, ...options }
  if (loaded > 0) return 'osm'
  if (!online) return 'offline'
  if (failed >= maxErrors) return 'offline'
  if (elapsedMs >= timeoutMs) return 'offline'
  return 'pending'
}
