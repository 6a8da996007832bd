import { describe, expect, it } from 'vitest'
import { ApiError, createReport, fetchJson, getLayers } from '../src/api.js'

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

describe('createReport', () => {
  const ok = (status, body) => ({ ok: status < 300, status, statusText: '', text: async () => JSON.stringify(body) })

  it('posts the area as JSON and returns a report computed at once', async () => {
    const calls = []
    const fetchImpl = async (url, init) => {
      calls.push({ url, init })
      return ok(200, { id: 'r1', status: 'done' })
    }
    const geometry = { type: 'Polygon', coordinates: [] }
    expect(await createReport(geometry, { fetchImpl })).toEqual({ id: 'r1', status: 'done' })
    expect(calls[0].url).toBe('/api/reports?species_limit=1000')
    expect(calls[0].init.method).toBe('POST')
    expect(calls[0].init.headers['Content-Type']).toBe('application/json')
    expect(JSON.parse(calls[0].init.body)).toEqual(geometry)
  })

  it('polls a background report until done, reporting progress', async () => {
    const answers = [
      ok(202, { id: 'r2', status: 'pending', area_km2: 900, report_url: '/api/reports/r2' }),
      ok(200, { id: 'r2', status: 'running', area_km2: 900 }),
      ok(200, { id: 'r2', status: 'done', area_km2: 900 }),
      ok(200, { id: 'r2', status: 'done', home: {} }),
    ]
    const urls = []
    const fetchImpl = async (url) => {
      urls.push(url)
      return answers.shift()
    }
    const seen = []
    const report = await createReport({}, { fetchImpl, sleep: async () => {}, onProgress: (s) => seen.push(s.status) })
    expect(report).toEqual({ id: 'r2', status: 'done', home: {} })
    expect(seen).toEqual(['pending', 'running', 'done'])
    expect(urls.slice(1)).toEqual(['/api/reports/r2/status', '/api/reports/r2/status', '/api/reports/r2?species_limit=1000'])
  })

  it('fails with the server reason', async () => {
    const answers = [ok(202, { id: 'r3', status: 'pending' }), ok(200, { id: 'r3', status: 'failed', error: 'disk full' })]
    const err = await createReport({}, { fetchImpl: async () => answers.shift(), sleep: async () => {} }).catch((e) => e)
    expect(err).toBeInstanceOf(ApiError)
    expect(err.message).toBe('The report failed: disk full')
  })

  it('passes the 422 reason of a bad area to the user', async () => {
    const fetchImpl = async () => ok(422, { detail: 'the area is outside the mapped region' })
    const err = await createReport({}, { fetchImpl }).catch((e) => e)
    expect(err.message).toMatch(/422.*outside the mapped region/)
  })
})
