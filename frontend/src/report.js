/**
 * Area reports shaped for the side panel (plain, no Vue): one table per module, CSV text, export
 * links, and the comparison of two areas. The report is the body of GET /api/reports/{id}.
 */

/** Tabs of the report panel, in order, one per module. */
export const REPORT_TABS = [
  { id: 'home', label: 'Home' },
  { id: 'species', label: 'Species' },
  { id: 'habitats', label: 'Habitats' },
  { id: 'indicators', label: 'Indicators' },
  { id: 'traits', label: 'Traits' },
]

/** Modules the server exports as CSV (GET /api/reports/{id}/export?format=csv&module=...). */
export const CSV_MODULES = ['species', 'habitats', 'indicators', 'traits']

/** Download URL of a report export: format 'json', 'geojson' or 'csv' (with a module). */
export function exportUrl(reportId, format, module) {
  const params = new URLSearchParams({ format })
  if (format === 'csv') params.set('module', module)
  return `/api/reports/${encodeURIComponent(reportId)}/export?${params}`
}

/** A number for a table cell: up to 3 significant digits, '–' for none. */
export function formatNumber(value, digits = 3) {
  if (value === null || value === undefined || value === '') return '–'
  const number = Number(value)
  if (!Number.isFinite(number)) return '–'
  if (Number.isInteger(number)) return number.toLocaleString('en')
  if (Math.abs(number) >= 1000) return Math.round(number).toLocaleString('en')
  return String(Number(number.toPrecision(digits)))
}

/** A share 0..1 as a percentage with one decimal ('–' for none). */
export function formatPercent(share) {
  const number = Number(share)
  if (share === null || share === undefined || !Number.isFinite(number)) return '–'
  return `${(Math.round(number * 1000) / 10).toFixed(1)} %`
}

const FLAG_LABELS = {
  eu_directive: 'EU directive',
  threatened: 'threatened',
  invasive: 'invasive',
  endemic: 'endemic',
  tree: 'tree',
}

/** Short labels of the status flags a species carries. */
export function speciesFlags(species) {
  return Object.keys(FLAG_LABELS).filter((flag) => species?.[flag]).map((flag) => FLAG_LABELS[flag])
}

/** Headline numbers of the Summary tab: `[{label, value, hint}]`. */
export function summaryCards(report) {
  const home = report?.home ?? {}
  const area = report?.area ?? {}
  const counts = home.counts ?? {}
  const richness = home.scores?.richness
  const cards = [
    { label: 'Area', value: `${formatNumber(area.km2)} km²`, hint: `${formatNumber(area.cells)} cells of 50 m` },
    { label: 'Species predicted', value: formatNumber(home.species_present), hint: 'in at least one cell' },
  ]
  if (richness) {
    cards.push({
      label: 'Species per cell',
      value: `${formatNumber(richness.mean)} ± ${formatNumber(richness.ci_mean)}`,
      hint: 'mean ± 2 sigma',
    })
  }
  cards.push(
    { label: 'Threatened (IUCN VU/EN/CR)', value: formatNumber(counts.threatened ?? 0), hint: 'species' },
    { label: 'EU directive', value: formatNumber(counts.eu_directive ?? 0), hint: 'species' },
    { label: 'Invasive', value: formatNumber(counts.invasive ?? 0), hint: 'species' },
    { label: 'Endemic', value: formatNumber(counts.endemic ?? 0), hint: 'species' },
  )
  const status = home.most_threatened_status
  if (status) cards.push({ label: 'Most threatened status', value: status.label, hint: formatPercent(status.coverage) })
  return cards
}

/** Columns of a module table: `{key, label, numeric}`; `format` turns a row value into text. */
export const COLUMNS = {
  species: [
    // The family and the status flags go on a second line under the name (`sub`).
    { key: 'name', label: 'Species', sub: (row) => [row.family, ...row.flags].filter(Boolean).join(' · ') },
    { key: 'iucn', label: 'IUCN' },
    { key: 'coverage', label: 'Cover', numeric: true, format: formatPercent },
    { key: 'mean_probability', label: 'Mean p', numeric: true, format: formatNumber },
  ],
  habitats: [
    { key: 'code', label: 'Code' },
    { key: 'name', label: 'Habitat' },
    { key: 'coverage', label: 'Coverage', numeric: true, format: formatPercent },
    { key: 'cells', label: 'Cells', numeric: true, format: formatNumber },
  ],
  indicators: [
    { key: 'title', label: 'Indicator (per cell)', sub: (row) => [row.units, row.range !== '–' && `range ${row.range}`].filter(Boolean).join(' · ') },
    { key: 'mean', label: 'Mean', numeric: true, format: formatNumber },
    { key: 'ci', label: '± 2σ', numeric: true, format: formatNumber },
  ],
  traits: [
    { key: 'title', label: 'Trait', sub: (row) => row.units },
    { key: 'mean', label: 'Mean', numeric: true, format: formatNumber },
    { key: 'median', label: 'Median', numeric: true, format: formatNumber },
    { key: 'spread', label: 'Spread', numeric: true, format: formatNumber },
  ],
}

/** Text of a cell of `column` in `row`. */
export function cellText(column, row) {
  const value = row[column.key]
  if (column.format) return column.format(value)
  return value === null || value === undefined || value === '' ? '–' : String(value)
}

/** Species rows, most widespread first; `filter` = {q, flag} narrows them. */
export function speciesRows(report, { q = '', flag = '' } = {}) {
  const needle = q.trim().toLowerCase()
  return (report?.species?.items ?? [])
    .filter((s) => !needle || s.name.toLowerCase().includes(needle) || (s.family ?? '').toLowerCase().includes(needle))
    .filter((s) => !flag || s[flag])
    .map((s) => ({
      id: s.id,
      name: s.name,
      family: s.family ?? '',
      iucn: s.iucn ?? '',
      flags: speciesFlags(s),
      coverage: s.coverage,
      mean_probability: s.mean_probability,
      layer: s.layers?.[0] ?? `species.${s.id}`,
    }))
}

/** Habitat rows of one EUNIS level (1, 2 or 3), by decreasing coverage, plus an unclassified row. */
export function habitatRows(report, level) {
  const habitats = report?.habitats ?? {}
  const rows = (habitats.levels?.[String(level)] ?? []).map((h) => ({
    code: h.code ?? '',
    name: stripCode(h.name, h.code),
    coverage: h.coverage,
    cells: h.cells,
    color: h.color,
  }))
  const unclassified = habitats.unclassified_cells?.[String(level)] ?? 0
  const cells = report?.area?.cells ?? 0
  if (unclassified > 0) {
    rows.push({ code: '', name: 'Unclassified', coverage: cells ? unclassified / cells : null, cells: unclassified, color: null })
  }
  return rows
}

function stripCode(name, code) {
  const text = String(name ?? '')
  return code && text.startsWith(`${code} `) ? text.slice(code.length + 1) : text
}

/** Indicator rows (mean, 2-sigma half-width, range) with the layers to show them. */
export function indicatorRows(report) {
  return (report?.indicators?.items ?? []).map((e) => ({
    id: e.id,
    title: e.title,
    mean: e.mean,
    ci: e.ci_mean ?? null,
    range: e.min === null || e.min === undefined ? '–' : `${formatNumber(e.min)} – ${formatNumber(e.max)}`,
    units: e.units ?? '',
    layer: e.id,
    uncertaintyLayer: e.ci_layer ?? null,
  }))
}

/** Trait rows (community-weighted mean, median, spread). */
export function traitRows(report) {
  return (report?.traits?.items ?? []).map((e) => ({
    id: e.id,
    title: e.title,
    mean: e.mean,
    median: e.quantiles?.p50 ?? null,
    spread: e.spread_mean ?? null,
    units: e.units ?? '',
    layer: e.id,
    uncertaintyLayer: e.spread_layer ?? null,
  }))
}

/** One CSV field (RFC 4180: quoted when it holds a comma, quote or line break). */
export function csvField(value) {
  if (value === null || value === undefined) return ''
  const text = Array.isArray(value) ? value.join('; ') : String(value)
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text
}

/** CSV text from `columns` ({key, label}) and rows of plain values, CRLF line ends. */
export function toCsv(columns, rows) {
  const lines = [columns.map((c) => csvField(c.label)).join(',')]
  for (const row of rows) lines.push(columns.map((c) => csvField(row[c.key])).join(','))
  return lines.join('\r\n') + '\r\n'
}

/** Columns of the comparison's CSV download: one line per row of `comparisonRows`. */
export const COMPARISON_CSV_COLUMNS = [
  { key: 'group', label: 'group' },
  { key: 'label', label: 'quantity' },
  { key: 'units', label: 'units' },
  { key: 'a', label: 'area A' },
  { key: 'b', label: 'area B' },
]

/** CSV text of the comparison table (`rows` from `comparisonRows`), areas A and B side by side. */
export function comparisonCsv(rows) {
  return toCsv(COMPARISON_CSV_COLUMNS, rows.map((r) => ({ ...r, a: r.values[0], b: r.values[1] })))
}

/**
 * The comparison (GET /api/reports/compare) as table rows: `{label, values: [a, b], units}` for
 * the headline numbers, the indicators and traits, and level-1 habitat coverages.
 */
export function comparisonRows(comparison) {
  if (!comparison?.areas) return []
  const areas = comparison.areas
  const pick = (fn) => areas.map((a) => fn(a) ?? null)
  const rows = [
    { group: 'Area', label: 'Area', units: 'km²', values: pick((a) => a.area_km2) },
    { group: 'Area', label: 'Species predicted', units: 'species', values: pick((a) => a.species_present) },
    { group: 'Area', label: 'Threatened species', units: 'species', values: pick((a) => a.threatened_species) },
    { group: 'Area', label: 'EU directive species', units: 'species', values: pick((a) => a.eu_directive_species) },
    { group: 'Area', label: 'Invasive species', units: 'species', values: pick((a) => a.invasive_species) },
    { group: 'Area', label: 'Dominant habitat (level 3)', units: '', values: pick((a) => a.dominant_habitat_l3), text: true },
  ]
  const sp = comparison.species ?? {}
  if (Array.isArray(sp.unique)) rows.push({ group: 'Area', label: 'Species found only here', units: 'species', values: sp.unique })
  for (const e of comparison.indicators ?? []) {
    const trait = e.id.startsWith('trait.')
    // Indicators are means per 50 m cell, unlike the species counts of the whole area above.
    rows.push({ group: trait ? 'Traits' : 'Indicators', label: trait ? e.title : `${e.title}, mean per cell`, units: e.units ?? '', values: e.mean })
  }
  for (const h of comparison.habitats_level1 ?? []) {
    rows.push({ group: 'Habitats (level 1)', label: stripCode(h.name, h.code), units: 'share', values: h.coverage, share: true })
  }
  return rows
}

/** Jaccard similarity of the first two areas' species lists (0..1), or null. */
export function jaccard(comparison) {
  const value = comparison?.species?.jaccard?.[0]?.[1]
  return Number.isFinite(value) ? value : null
}
