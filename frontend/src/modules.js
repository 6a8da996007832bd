/** The app's modules and the layers each one offers (plain helpers over the catalog). */

export const MODULE_TABS = [
  { id: 'home', label: 'Home' },
  { id: 'species', label: 'Species' },
  { id: 'habitats', label: 'Habitats' },
  { id: 'indicators', label: 'Indicators' },
  { id: 'traits', label: 'Traits' },
]

/** The layer a module shows when the user opens it and its own layer is not on the map. */
export const MODULE_DEFAULT_LAYER = {
  home: 'indicator.richness',
  habitats: 'habitat.l3',
  indicators: 'indicator.richness',
  traits: 'trait.height',
}

/** Module a layer belongs to (uncertainty layers belong to their main layer's module). */
export function moduleOfLayer(layer) {
  const kind = String(layer?.kind ?? '').replace(/-uncertainty$|-probability$|-presence$|-suitability$/, '')
  if (kind === 'species') return 'species'
  if (kind === 'habitat') return 'habitats'
  if (kind === 'indicator') return 'indicators'
  if (kind === 'trait') return 'traits'
  return 'home'
}

/** Main (non-uncertainty) layers of a module, in catalog order. */
export function moduleLayers(layers, module) {
  return (layers || []).filter(
    (l) => moduleOfLayer(l) === module && !/-uncertainty$|-probability$|-presence$|-suitability$/.test(l.kind ?? ''),
  )
}

/**
 * The uncertainty companion of a layer: the 2-sigma half-width of an indicator (`.ci`), the spread
 * of a trait (`.sd`), the class probability of a habitat map, the presence map of a species.
 */
export function uncertaintyLayerId(layers, id) {
  const ids = new Set((layers || []).map((l) => l.id))
  for (const candidate of [`${id}.ci`, `${id}.sd`]) if (ids.has(candidate)) return candidate
  if (/^habitat\.l[123]$/.test(id ?? '') && ids.has('habitat.l3.probability')) return 'habitat.l3.probability'
  return null
}

/** The main layer of an uncertainty layer id (itself when it is a main layer). */
export function mainLayerId(layers, id) {
  const ids = new Set((layers || []).map((l) => l.id))
  const stripped = String(id ?? '').replace(/\.(ci|sd)$/, '')
  if (stripped !== id && ids.has(stripped)) return stripped
  if (id === 'habitat.l3.probability' && ids.has('habitat.l3')) return 'habitat.l3'
  return id
}

/** The habitat map layer of a EUNIS level (1, 2 or 3). */
export function habitatLayerId(level) {
  return `habitat.l${level}`
}

/** Flatten the habitat tree into rows `{code, name, level, mapped, hasChildren, path}` in tree order. */
export function flattenTree(nodes, expanded = new Set(), out = []) {
  for (const node of nodes || []) {
    const hasChildren = (node.children ?? []).length > 0
    out.push({ code: node.code, name: node.name, level: node.level, mapped: node.mapped, hasChildren, open: expanded.has(node.code) })
    if (hasChildren && expanded.has(node.code)) flattenTree(node.children, expanded, out)
  }
  return out
}

/**
 * A map of one class of a categorical layer (a habitat): the class's cells in its colour, the rest
 * transparent, drawn by TiTiler from an expression. Null when the class is not in the legend.
 */
export function classOnlyLayer(layer, code) {
  const item = layer?.legend?.items?.find((i) => i.code === code)
  if (!item) return null
  const [r, g, b] = [1, 3, 5].map((i) => parseInt((item.color ?? '#000000').slice(i, i + 2), 16))
  const params = new URLSearchParams({
    // `(b1==v)*1`, not `b1==v`: a boolean expression is not rendered by the tiler.
    expression: `(b1==${item.value})*1`,
    colormap: JSON.stringify({ 0: [0, 0, 0, 0], 1: [r, g, b, 255] }),
  })
  return {
    ...layer,
    id: `${layer.id}:${code}`,
    title: `${item.label}: where predicted`,
    description: `Cells of the ${layer.title} map classified as ${item.label}.`,
    tiles_url: `/tiles/${encodeURIComponent(layer.id)}/tiles/WebMercatorQuad/{z}/{x}/{y}.png?${params}`,
    legend: { type: 'categorical', items: [{ value: 1, label: item.label, color: item.color }] },
  }
}
