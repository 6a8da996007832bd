/** Client for the GeoFlora REST API (same origin as the page). */

/** Links to the services the back end publishes beside the map. */
export const SERVICE_LINKS = {
  apiDocs: '/docs',
  wmsCapabilities: '/wms?SERVICE=WMS&REQUEST=GetCapabilities&VERSION=1.3.0',
}

/** An API call that failed; `message` is meant for the user. */
export class ApiError extends Error {
  constructor(message, { url, status = null } = {}) {
    super(message)
    this.name = 'ApiError'
    this.url = url
    this.status = status
  }
}

/**
 * Fetch a JSON document (GET, or POST with `body` sent as JSON); throws ApiError on network
 * failure, HTTP error or a non-JSON body. `withStatus` returns `{status, body}` instead of the body.
 */
export async function fetchJson(url, { fetchImpl = globalThis.fetch, signal, body, withStatus = false } = {}) {
  let response
  const init = { headers: { Accept: 'application/json' }, signal }
  if (body !== undefined) {
    init.method = 'POST'
    init.headers['Content-Type'] = 'application/json'
    init.body = JSON.stringify(body)
  }
  try {
    response = await fetchImpl(url, init)
  } catch (err) {
    throw new ApiError(`Cannot reach the GeoFlora API (${url}): ${err.message}`, { url })
  }
  const text = await response.text()
  if (!response.ok) {
    const detail = errorDetail(text)
    const status = `${response.status}${response.statusText ? ' ' + response.statusText : ''}`
    throw new ApiError(`${url} answered ${status}${detail ? `: ${detail}` : ''}`, {
      url,
      status: response.status,
    })
  }
  let parsed
  try {
    parsed = JSON.parse(text)
  } catch {
    throw new ApiError(`${url} did not return JSON`, { url, status: response.status })
  }
  return withStatus ? { status: response.status, body: parsed } : parsed
}

/** GET /api/health. */
export function getHealth(options) {
  return fetchJson('/api/health', options)
}

/** GET /api/layers, checked for the shape the map needs: `{run, layers: [...]}`. */
export async function getLayers(options) {
  const catalog = await fetchJson('/api/layers', options)
  if (!catalog || !Array.isArray(catalog.layers)) {
    throw new ApiError('/api/layers returned no layer list', { url: '/api/layers' })
  }
  return { run: catalog.run ?? null, layers: catalog.layers }
}

/** GET /api/species?q=: species whose name matches (prefix first, typos tolerated). */
export function searchSpecies(q, options) {
  return fetchJson(`/api/species?${new URLSearchParams({ q, limit: '20' })}`, options)
}

/** GET /api/species/{id}: attributes, status, where it is predicted, its layers. */
export function getSpecies(id, options) {
  return fetchJson(`/api/species/${encodeURIComponent(id)}`, options)
}

/** GET /api/habitats: the EUNIS tree, levels 1 to 3. */
export function getHabitatTree(options) {
  return fetchJson('/api/habitats?depth=3', options)
}

/** GET /api/habitats/{code}: one habitat and its sub-types. */
export function getHabitat(code, options) {
  return fetchJson(`/api/habitats/${encodeURIComponent(code)}`, options)
}

/** Class histogram of a categorical layer over the whole run (TiTiler statistics, downsampled). */
export function getClassShares(layerId, options) {
  return fetchJson(`/tiles/${encodeURIComponent(layerId)}/statistics?categorical=true&max_size=512`, options)
}

/** GET a WMS GetFeatureInfo URL answered in JSON. */
export function getFeatureInfo(url, options) {
  return fetchJson(url, options)
}

/**
 * POST /api/reports and wait for the report. A large area answers 202: the state is polled every
 * `pollMs` and `onProgress(state)` hears each one until the report is done or failed.
 */
export async function createReport(geometry, { onProgress = () => {}, pollMs = 1000, sleep, ...options } = {}) {
  const wait = sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)))
  const first = await fetchJson('/api/reports?species_limit=1000', { ...options, body: geometry, withStatus: true })
  if (first.status !== 202) return first.body
  let state = first.body
  for (;;) {
    onProgress(state)
    if (state.status === 'failed') throw new ApiError(`The report failed: ${state.error}`, { url: state.report_url })
    if (state.status === 'done') return getReport(state.id, options)
    await wait(pollMs)
    state = await fetchJson(`/api/reports/${state.id}/status`, options)
  }
}

/** GET /api/reports/{id}: a stored report (its species list trimmed to `speciesLimit`). */
export function getReport(id, options, speciesLimit = 1000) {
  return fetchJson(`/api/reports/${encodeURIComponent(id)}?species_limit=${speciesLimit}`, options)
}

/** GET /api/reports/compare for two report ids. */
export function compareReports(a, b, options) {
  return fetchJson(`/api/reports/compare?${new URLSearchParams([['ids', a], ['ids', b]])}`, options)
}

// FastAPI puts the reason in `detail`: a string, or a list of validation errors.
function errorDetail(text) {
  if (!text) return ''
  try {
    const body = JSON.parse(text)
    const detail = body?.detail ?? body
    if (typeof detail === 'string') return detail
    if (Array.isArray(detail)) return detail.map((d) => d?.msg ?? JSON.stringify(d)).join('; ')
    return JSON.stringify(detail)
  } catch {
    return text.length > 200 ? '' : text.trim()
  }
}
