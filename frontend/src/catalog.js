/** Plain helpers over the layer catalog returned by GET /api/layers. */

/** Display order and headings of layer kinds; unknown kinds follow, alphabetically. */
export const KIND_LABELS = {
  species: 'Species',
  habitat: 'Habitats',
  indicator: 'Biodiversity indicators',
  trait: 'Plant traits',
}

/** Heading for a kind, falling back to the kind itself, capitalised. */
export function kindLabel(kind) {
  if (KIND_LABELS[kind]) return KIND_LABELS[kind]
  const text = String(kind || 'other')
  return text.charAt(0).toUpperCase() + text.slice(1)
}

/** Group layers by kind: `[{kind, label, layers}]`, known kinds first, layer order kept. */
export function groupLayersByKind(layers) {
  const byKind = new Map()
  for (const layer of layers || []) {
    const kind = layer.kind || 'other'
    if (!byKind.has(kind)) byKind.set(kind, [])
    byKind.get(kind).push(layer)
  }
  const known = Object.keys(KIND_LABELS)
  const rank = (kind) => (known.includes(kind) ? known.indexOf(kind) : known.length)
  return [...byKind.keys()]
    .sort((a, b) => rank(a) - rank(b) || a.localeCompare(b))
    .map((kind) => ({ kind, label: kindLabel(kind), layers: byKind.get(kind) }))
}

/** The layer with this id, or null. */
export function findLayer(layers, id) {
  return (layers || []).find((layer) => layer.id === id) ?? null
}

/** The layer a new visitor sees first: species richness when the run has it. */
export const DEFAULT_LAYER_ID = 'indicator.richness'

/** Id of the layer to show first: the default one if present, else the first as listed, or null. */
export function firstLayerId(layers) {
  if (findLayer(layers, DEFAULT_LAYER_ID)) return DEFAULT_LAYER_ID
  return groupLayersByKind(layers)[0]?.layers[0]?.id ?? null
}

/**
 * Catalog bounds `[west, south, east, north]` as Leaflet corners `[[south, west], [north, east]]`,
 * or null when they are missing or not a valid box.
 */
export function toLatLngCorners(bounds) {
  if (!Array.isArray(bounds) || bounds.length !== 4) return null
  const [west, south, east, north] = bounds.map(Number)
  if (![west, south, east, north].every(Number.isFinite)) return null
  if (west >= east || south >= north) return null
  return [
    [Math.max(south, -85), west],
    [Math.min(north, 85), east],
  ]
}

/** True when two catalog bounds are the same box (so switching layers need not move the map). */
export function sameBounds(a, b) {
  if (!Array.isArray(a) || !Array.isArray(b) || a.length !== 4 || b.length !== 4) return false
  return a.every((value, i) => Math.abs(value - b[i]) < 1e-9)
}
