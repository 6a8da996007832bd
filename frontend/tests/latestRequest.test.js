import { describe, expect, it } from 'vitest'
import { latestRequest } from '../src/latestRequest.js'

describe('latestRequest', () => {
  it('keeps only the newest request current', () => {
    const requests = latestRequest()
    const first = requests.start()
    expect(first.current).toBe(true)
    const second = requests.start()
    expect([first.current, second.current]).toEqual([false, true])
  })

  it('cancels every request started so far', () => {
    const requests = latestRequest()
    const pending = requests.start()
    requests.cancel()
    expect(pending.current).toBe(false)
    expect(requests.start().current).toBe(true)
  })

  it('lets a newer answer stand when an older, slower one arrives after it', async () => {
    const requests = latestRequest()
    let shown = null
    let releaseOld
    const ask = async (answer) => {
      const request = requests.start()
      const value = await answer
      if (request.current) shown = value
    }
    const old = ask(new Promise((resolve) => (releaseOld = resolve)))
    await ask(Promise.resolve('new'))
    releaseOld('old')
    await old
    expect(shown).toBe('new')
  })

  it('keeps separate guards apart', () => {
    const a = latestRequest()
    const b = latestRequest()
    const inA = a.start()
    b.start()
    b.cancel()
    expect(inA.current).toBe(true)
  })
})
