import { describe, expect, it } from 'vitest'
import { decideBasemap } from '../src/map/fallback.js'

describe('decideBasemap', () => {
  it('waits while nothing has happened yet', () => {
    expect(decideBasemap({ loaded: 0, failed: 0, elapsedMs: 100 })).toBe('pending')
    expect(decideBasemap({ loaded: 0, failed: 1, elapsedMs: 100 })).toBe('pending')
  })

  it('keeps OSM once any tile has loaded, even after errors or the timeout', () => {
    expect(decideBasemap({ loaded: 1, failed: 0, elapsedMs: 10 })).toBe('osm')
    expect(decideBasemap({ loaded: 1, failed: 5, elapsedMs: 60_000 })).toBe('osm')
  })

  it('goes offline after repeated tile errors', () => {
    expect(decideBasemap({ loaded: 0, failed: 2, elapsedMs: 100 })).toBe('offline')
    expect(decideBasemap({ loaded: 0, failed: 3, elapsedMs: 100 }, { maxErrors: 4 })).toBe('pending')
  })

  it('goes offline after the timeout with no tile', () => {
    expect(decideBasemap({ loaded: 0, failed: 0, elapsedMs: 8000 })).toBe('offline')
    expect(decideBasemap({ loaded: 0, failed: 0, elapsedMs: 8000 }, { timeoutMs: 20_000 })).toBe(
      'pending',
    )
  })

  it('goes offline at once when the browser reports no network', () => {
    expect(decideBasemap({ loaded: 0, failed: 0, elapsedMs: 0, online: false })).toBe('offline')
  })
})
