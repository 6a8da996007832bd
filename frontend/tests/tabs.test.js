import { describe, expect, it } from 'vitest'
import { onTabKeydown, tabAfterKey } from '../src/tabs.js'

const tabs = [{ id: 'a' }, { id: 'b' }, { id: 'c' }]

describe('tab keys', () => {
  it('moves with the arrows and wraps around', () => {
    expect(tabAfterKey(tabs, 0, 'ArrowRight')).toBe('b')
    expect(tabAfterKey(tabs, 0, 'ArrowLeft')).toBe('c')
    expect(tabAfterKey(tabs, 2, 'ArrowDown')).toBe('a')
    expect(tabAfterKey(tabs, 1, 'ArrowUp', { vertical: false })).toBeNull()
    expect(tabAfterKey(tabs, 1, 'Enter')).toBeNull()
  })

  it('selects and focuses the next tab', () => {
    let focused = null
    let prevented = false
    const selected = []
    const event = {
      key: 'ArrowRight',
      preventDefault: () => (prevented = true),
      currentTarget: { parentElement: { querySelector: (sel) => ({ focus: () => (focused = sel) }) } },
    }
    onTabKeydown(event, tabs, 1, (id) => selected.push(id), 'tab')
    expect([selected, focused, prevented]).toEqual([['c'], '[data-tab="c"]', true])
  })
})
