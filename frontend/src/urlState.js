/** Glue between the store and the URL hash (permalinks): read once at start, written on change. */
import { decodePermalink, encodePermalink } from './permalink.js'

/** What of the store goes into the link. */
export function permalinkState(store) {
  const s = store.state
  return {
    module: s.module,
    layer: s.selectedId,
    view: s.view,
    opacity: s.opacity,
    uncertainty: s.uncertainty,
    report: s.reports.a.report?.id ?? null,
    compare: s.reports.b.report?.id ?? null,
    species: s.species?.id ?? null,
    habitat: s.habitat?.code ?? null,
  }
}

/** Apply a decoded link after the catalog has loaded (unknown layers are ignored by the store). */
export function applyPermalink(store, link) {
  if (link.module) store.setModule(link.module)
  if (link.layer) store.selectLayer(link.layer)
  if (link.opacity !== undefined) store.setOpacity(link.opacity)
  if (link.uncertainty) store.setUncertainty(true)
  if (link.report) store.loadReport('a', link.report)
  if (link.report && link.compare) store.loadReport('b', link.compare)
  // Fact sheets reopen without changing the layer the link names.
  if (link.species !== undefined) store.openSpecies(link.species, { show: !link.layer })
  if (link.habitat) store.openHabitat(link.habitat, undefined, { show: !link.layer })
}

export function readLocation(location = globalThis.location) {
  return decodePermalink(location?.hash ?? '')
}

/** Replace the URL's hash without adding a history entry for every map move. */
export function writeLocation(store, history = globalThis.history, location = globalThis.location) {
  const hash = encodePermalink(permalinkState(store))
  const url = `${location.pathname}${location.search}${hash ? `#${hash}` : ''}`
  if (url !== `${location.pathname}${location.search}${location.hash}`) history.replaceState(null, '', url)
}
