/** Content of the "values at this point" popup, built as DOM (no HTML strings from the server). */

/** A DOM node listing `point.rows` ({title, text, hasValue}) under the coordinates. */
export function valuesPopup(point, doc = document) {
  const root = doc.createElement('div')
  root.className = 'point-values'
  root.dataset.testid = 'point-values'
  const heading = doc.createElement('p')
  heading.className = 'point-values__where'
  heading.textContent = `${point.lat.toFixed(5)}° N, ${point.lng.toFixed(5)}° E`
  root.append(heading)
  if (point.loading) {
    root.append(textNode(doc, 'p', 'Reading the values…'))
    return root
  }
  if (point.error) {
    root.append(textNode(doc, 'p', point.error, 'error-text'))
    return root
  }
  if (!point.rows.some((r) => r.hasValue)) {
    root.append(textNode(doc, 'p', 'No data here: the point is outside the mapped region.', 'muted'))
    return root
  }
  const table = doc.createElement('table')
  for (const [i, row] of point.rows.entries()) {
    const tr = doc.createElement('tr')
    // The first row is the layer on the map.
    if (i === 0) tr.className = 'is-shown'
    tr.append(textNode(doc, 'th', row.title), textNode(doc, 'td', row.text, row.hasValue ? '' : 'muted'))
    table.append(tr)
  }
  root.append(table)
  return root
}

function textNode(doc, tag, text, className = '') {
  const el = doc.createElement(tag)
  el.textContent = text
  if (className) el.className = className
  return el
}
