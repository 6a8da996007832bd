import { describe, expect, it } from 'vitest'
import { formatValue, gradientCss, legendType, legendUnits } from '../src/legend.js'

describe('gradientCss', () => {
  it('spaces the stops evenly from 0 to 100 %', () => {
    expect(gradientCss(['#440154', '#21918c', '#fde725'])).toBe(
      'linear-gradient(to right, #440154 0%, #21918c 50%, #fde725 100%)',
    )
  })

  it('rounds uneven positions', () => {
    const css = gradientCss(['#000', '#111', '#222', '#333'])
    expect(css).toBe('linear-gradient(to right, #000 0%, #111 33.33%, #222 66.67%, #333 100%)')
  })

  it('handles one colour, none, and a direction', () => {
    expect(gradientCss(['#abcdef'])).toBe('#abcdef')
    expect(gradientCss([])).toBe('transparent')
    expect(gradientCss(undefined)).toBe('transparent')
    expect(gradientCss(['#000', '#fff'], 'to top')).toBe('linear-gradient(to top, #000 0%, #fff 100%)')
  })
})

describe('legend helpers', () => {
  it('prefers the legend units over the layer units', () => {
    expect(legendUnits({ units: 'n', legend: { units: 'species' } })).toBe('species')
    expect(legendUnits({ units: 'm', legend: {} })).toBe('m')
    expect(legendUnits({ units: null, legend: { type: 'categorical' } })).toBe('')
  })

  it('formats legend numbers briefly', () => {
    expect(formatValue(120)).toBe('120')
    expect(formatValue(0.123456)).toBe('0.123')
    expect(formatValue(12.5)).toBe('12.5')
    expect(formatValue('x')).toBe('')
  })

  it('recognises the legend types it can draw', () => {
    expect(legendType({ type: 'continuous', colors: ['#000'], min: 0, max: 1 })).toBe('continuous')
    expect(legendType({ type: 'continuous', colors: [] })).toBeNull()
    expect(legendType({ type: 'categorical', items: [] })).toBe('categorical')
    expect(legendType({ type: 'fancy' })).toBeNull()
    expect(legendType(undefined)).toBeNull()
  })
})
