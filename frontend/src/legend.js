/** Plain helpers that turn a catalog legend into what the legend panel draws. */

/** CSS linear-gradient with the colour stops evenly spaced, as the tile colormap spaces them. */
export function gradientCss(colors, direction = 'to right') {
  const stops = (colors || []).filter(Boolean)
  if (stops.length === 0) return 'transparent'
  if (stops.length === 1) return stops[0]
  const last = stops.length - 1
  const parts = stops.map((color, i) => `${color} ${round((i / last) * 100)}%`)
  return `linear-gradient(${direction}, ${parts.join(', ')})`
}

/** Units to print under a legend: the legend's own, else the layer's, else ''. */
export function legendUnits(layer) {
  return layer?.legend?.units || layer?.units || ''
}

/** Short label for a legend number: no trailing zeros, at most 3 significant decimals. */
export function formatValue(value) {
  const number = Number(value)
  if (!Number.isFinite(number)) return ''
  if (Number.isInteger(number)) return String(number)
  return String(Number(number.toPrecision(3)))
}

/** The legend kind the panel knows how to draw: 'continuous', 'categorical' or null. */
export function legendType(legend) {
  if (legend?.type === 'continuous' && Array.isArray(legend.colors) && legend.colors.length) {
    return 'continuous'
  }
  if (legend?.type === 'categorical' && Array.isArray(legend.items)) return 'categorical'
  return null
}

function round(value) {
  return Math.round(value * 100) / 100
}
