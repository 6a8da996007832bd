/** Values at a clicked point: WMS GetFeatureInfo (JSON) over several layers at once (plain). */

/** Most layers asked about in one click (the selected layer comes first). */
export const MAX_QUERY_LAYERS = 16

/**
 * Layers to query at a point: the shown layer first, then the headline layers of the run
 * (indicators, habitats, traits); uncertainty companions are reported with their main layer.
 */
export function queryLayers(layers, selectedId) {
  const byId = new Map((layers || []).map((l) => [l.id, l]))
  const wanted = [selectedId]
  for (const l of layers || []) {
    if (['indicator', 'habitat', 'trait'].includes(l.kind) && l.legend?.type !== undefined) wanted.push(l.id)
  }
  const names = []
  for (const id of wanted) {
    const layer = byId.get(id)
    const name = layer?.wms_layer
    if (name && !names.includes(name)) names.push(name)
    if (names.length >= MAX_QUERY_LAYERS) break
  }
  return names
}

/**
 * GetFeatureInfo URL (WMS 1.1.1, EPSG:4326) for the 50 m cell under (lon, lat): a 3 x 3 pixel image
 * centred on the point, asking about its middle pixel.
 */
export function featureInfoUrl(names, lon, lat) {
  const d = 1e-5 // about 1 m: the middle pixel is the point itself
  const list = names.join(',')
  const params = new URLSearchParams({
    SERVICE: 'WMS',
    VERSION: '1.1.1',
    REQUEST: 'GetFeatureInfo',
    LAYERS: list,
    QUERY_LAYERS: list,
    STYLES: '',
    SRS: 'EPSG:4326',
    BBOX: [lon - d, lat - d, lon + d, lat + d].map((v) => v.toFixed(7)).join(','),
    WIDTH: '3',
    HEIGHT: '3',
    X: '1',
    Y: '1',
    FORMAT: 'image/png',
    INFO_FORMAT: 'application/json',
    FEATURE_COUNT: String(names.length),
  })
  return `/wms?${params}`
}

/** Rows `{layer, title, text, hasValue}` from a GetFeatureInfo FeatureCollection. */
export function featureInfoRows(collection) {
  return (collection?.features ?? []).map((f) => {
    const p = f.properties ?? {}
    const hasValue = p.value !== null && p.value !== undefined
    return { layer: p.layer ?? f.id, title: p.title ?? f.id, text: hasValue ? p.text : 'no data', hasValue }
  })
}
