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

/** GET a JSON document; throws ApiError on network failure, HTTP error or a non-JSON body. */
export async function fetchJson(url, { fetchImpl = globalThis.fetch, signal } = {}) {
  let response
  try {
    response = await fetchImpl(url, { headers: { Accept: 'application/json' }, signal })
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
  try {
    return JSON.parse(text)
  } catch {
    throw new ApiError(`${url} did not return JSON`, { url, status: response.status })
  }
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
