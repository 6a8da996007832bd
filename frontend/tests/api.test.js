import { describe, expect, it } from 'vitest'
import { ApiError, fetchJson, getLayers } from '../src/api.js'

const respond = (status, body, statusText = '') => async () => ({
  ok: status >= 200 && status < 300,
  status,
  statusText,
  text: async () => (typeof body === 'string' ? body : JSON.stringify(body)),
})

describe('fetchJson', () => {
  it('returns the parsed body', async () => {
    expect(await fetchJson('/api/health', { fetchImpl: respond(200, { status: 'ok' }) })).toEqual({
      status: 'ok',
    })
  })

  it('puts the status and FastAPI detail in the error message', async () => {
    const err = await fetchJson('/api/layers', {
      fetchImpl: respond(503, { detail: 'no live run' }, 'Service Unavailable'),
    }).catch((e) => e)
    expect(err).toBeInstanceOf(ApiError)
    expect(err.status).toBe(503)
    expect(err.message).toBe('/api/layers answered 503 Service Unavailable: no live run')
  })

  it('joins validation errors', async () => {
    const err = await fetchJson('/x', {
      fetchImpl: respond(422, { detail: [{ msg: 'bad a' }, { msg: 'bad b' }] }),
    }).catch((e) => e)
    expect(err.message).toBe('/x answered 422: bad a; bad b')
  })

  it('reports network failures and non-JSON bodies', async () => {
    const offline = await fetchJson('/api/layers', {
      fetchImpl: async () => {
        throw new TypeError('Failed to fetch')
      },
    }).catch((e) => e)
    expect(offline.message).toMatch(/Cannot reach the GeoFlora API.*Failed to fetch/)

    const html = await fetchJson('/api/layers', { fetchImpl: respond(200, '<html>') }).catch((e) => e)
    expect(html.message).toBe('/api/layers did not return JSON')
  })
})

describe('getLayers', () => {
  it('rejects a body without a layer list', async () => {
    await expect(getLayers({ fetchImpl: respond(200, { run: null }) })).rejects.toThrow(
      'returned no layer list',
    )
  })

  it('normalises a missing run to null', async () => {
    expect(await getLayers({ fetchImpl: respond(200, { layers: [] }) })).toEqual({ run: null, layers: [] })
  })
})
