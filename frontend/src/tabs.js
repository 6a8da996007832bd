/** Keyboard moves in a tab list (WAI-ARIA tabs pattern), plain. */

const STEPS = { ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1 }

/** Id of the tab an arrow key moves to from `index` (wrapping around), or null for other keys. */
export function tabAfterKey(tabs, index, key, { vertical = true } = {}) {
  const step = STEPS[key]
  if (!step || (!vertical && (key === 'ArrowUp' || key === 'ArrowDown'))) return null
  return tabs[(index + step + tabs.length) % tabs.length].id
}

/**
 * Keydown handler body for a tab button: on an arrow key, select the next tab (`select(id)`) and
 * focus its button, found by `data-<attr>` among the button's siblings.
 */
export function onTabKeydown(event, tabs, index, select, attr, options) {
  const next = tabAfterKey(tabs, index, event.key, options)
  if (next === null) return
  event.preventDefault()
  select(next)
  event.currentTarget.parentElement.querySelector(`[data-${attr}="${next}"]`)?.focus()
}
