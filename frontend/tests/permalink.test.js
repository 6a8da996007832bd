import { describe, expect, it } from 'vitest'
import { decodePermalink, encodePermalink } from '../src/permalink.js'

const ID_A = 'ac236daad69bbbd4c0e07cf90f88798e'
const ID_B = 'c6b34224c115534e902e5f8c15595426'

describe('permalinks', () => {
  it('round-trips the view, module, layer, areas and fact sheets', () => {
    const state = {
      module: 'indicators',
      layer: 'indicator.richness',
      view: { lat: 48.412345678, lng: 8.5, zoom: 12.2 },
      opacity: 0.55,
      uncertainty: true,
      report: ID_A,
      compare: ID_B,
      species: 24,
      habitat: 'C1.3',
    }
    const hash = encodePermalink(state)
    expect(hash).toBe(
      `m=indicators&l=indicator.richness&v=12%2F48.41235%2F8.50000&o=0.55&u=1&r=${ID_A}&c=${ID_B}&sp=24&h=C1.3`,
    )
    expect(decodePermalink(`#${hash}`)).toEqual({ ...state, view: { lat: 48.41235, lng: 8.5, zoom: 12 } })
  })

  it('leaves defaults out', () => {
    expect(encodePermalink({ module: 'home', opacity: 0.8, uncertainty: false, species: null })).toBe('')
    expect(encodePermalink()).toBe('')
  })

  it('drops malformed parts instead of throwing', () => {
    const link = decodePermalink('#m=admin&l=../../etc&v=99/1000/5&o=7&r=xyz&sp=-1&h=<b>&u=0')
    expect(link).toEqual({})
    expect(decodePermalink('v=4/52/10&sp=3')).toEqual({ view: { zoom: 4, lat: 52, lng: 10 }, species: 3 })
    expect(decodePermalink(undefined)).toEqual({})
  })
})
