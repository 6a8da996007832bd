import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import {
  COLUMNS,
  COMPARISON_CSV_COLUMNS,
  cellText,
  comparisonCsv,
  comparisonRows,
  csvField,
  exportUrl,
  formatNumber,
  formatPercent,
  habitatRows,
  indicatorRows,
  jaccard,
  speciesRows,
  summaryCards,
  toCsv,
  traitRows,
} from '../src/report.js'

// A real report body (POST /api/reports on the test run), trimmed to a few rows.
const report = JSON.parse(readFileSync(new URL('./fixtures/report.json', import.meta.url), 'utf8'))

describe('report tables', () => {
  it('shapes species rows with flags and their map layer', () => {
    const rows = speciesRows(report)
    expect(rows).toHaveLength(3)
    expect(rows[0]).toMatchObject({ id: 24, name: 'Virtuquercus caerulea', iucn: 'LC', flags: ['tree'], layer: 'species.24' })
    expect(COLUMNS.species[0].sub(rows[0])).toBe('Virtufagaceae · tree')
    expect(cellText(COLUMNS.species.find((c) => c.key === 'coverage'), rows[0])).toBe('99.7 %')
  })

  it('filters species by name, family and flag', () => {
    expect(speciesRows(report, { q: 'QUERCUS' }).map((r) => r.id)).toEqual([24])
    expect(speciesRows(report, { q: 'virtufabaceae' }).map((r) => r.name)).toEqual(['Virtutrifolium spinosa'])
    expect(speciesRows(report, { flag: 'tree' })).toHaveLength(1)
    expect(speciesRows(report, { flag: 'invasive' })).toHaveLength(0)
    expect(speciesRows(null)).toEqual([])
  })

  it('lists habitats per level with an unclassified row', () => {
    expect(habitatRows(report, 3)).toEqual([
      { code: 'T13', name: 'Temperate hardwood riparian forest', coverage: 1, cells: 32932, color: '#96e0a8' },
    ])
    const partial = { ...report, habitats: { ...report.habitats, unclassified_cells: { 1: 932 } } }
    const rows = habitatRows(partial, 1)
    expect(rows.at(-1)).toMatchObject({ name: 'Unclassified', cells: 932 })
    expect(rows.at(-1).coverage).toBeCloseTo(932 / 32932)
  })

  it('pairs indicators and traits with their uncertainty', () => {
    const [first] = indicatorRows(report)
    expect(first).toMatchObject({ id: 'indicator.eu_directive', mean: 0, ci: 0, range: '0 – 0', uncertaintyLayer: 'indicator.eu_directive.ci' })
    expect(traitRows(report)[0]).toMatchObject({ id: 'trait.height', mean: 1.51864, median: 1.38709, spread: 1.37284, units: 'm', uncertaintyLayer: 'trait.height.sd' })
  })

  it('summarises the area in cards', () => {
    const cards = Object.fromEntries(summaryCards(report).map((c) => [c.label, c.value]))
    expect(cards.Area).toBe('82.3 km²')
    expect(cards['Species predicted']).toBe('23')
    expect(cards['Threatened (IUCN VU/EN/CR)']).toBe('2')
    expect(cards['Species per cell']).toMatch(/^1\.1 ± /)
  })
})

describe('formatting and CSV', () => {
  it('formats numbers and shares', () => {
    expect(formatNumber(32932)).toBe('32,932')
    expect(formatNumber(0.0123456)).toBe('0.0123')
    expect(formatNumber(1234.5)).toBe('1,235')
    expect(formatNumber(null)).toBe('–')
    expect(formatPercent(0.99675)).toBe('99.7 %')
    expect(formatPercent(undefined)).toBe('–')
  })

  it('quotes CSV fields as RFC 4180 says', () => {
    expect(csvField('plain')).toBe('plain')
    expect(csvField('a, b')).toBe('"a, b"')
    expect(csvField('say "hi"')).toBe('"say ""hi"""')
    expect(csvField(['tree', 'endemic'])).toBe('tree; endemic')
    expect(csvField(null)).toBe('')
    const csv = toCsv([{ key: 'a', label: 'A' }, { key: 'b', label: 'B, b' }], [{ a: 1, b: 'x\ny' }, { a: null, b: 2 }])
    expect(csv).toBe('A,"B, b"\r\n1,"x\ny"\r\n,2\r\n')
  })

  it('builds export URLs', () => {
    expect(exportUrl('abc', 'json')).toBe('/api/reports/abc/export?format=json')
    expect(exportUrl('abc', 'csv', 'species')).toBe('/api/reports/abc/export?format=csv&module=species')
  })
})

describe('comparison', () => {
  const comparison = {
    areas: [
      { report: 'a', area_km2: 82.3, species_present: 23, threatened_species: 2, dominant_habitat_l3: 'T13' },
      { report: 'b', area_km2: 25, species_present: 17, threatened_species: 1, dominant_habitat_l3: 'R22' },
    ],
    species: { shared_by_all: 17, unique: [6, 0], jaccard: [[1, 0.7391], [0.7391, 1]] },
    indicators: [
      { id: 'indicator.richness', title: 'Species richness', units: 'species', mean: [1.1, 1.2] },
      { id: 'trait.height', title: 'Plant height', units: 'm', mean: [1.5, null] },
    ],
    habitats_level1: [{ code: 'T', name: 'T Forests', coverage: [1, 0.25] }],
  }

  it('lines up both areas', () => {
    const rows = comparisonRows(comparison)
    const byLabel = Object.fromEntries(rows.map((r) => [r.label, r.values]))
    expect(byLabel.Area).toEqual([82.3, 25])
    expect(byLabel['Species found only here']).toEqual([6, 0])
    expect(byLabel['Species richness, mean per cell']).toEqual([1.1, 1.2])
    expect(byLabel['Plant height']).toEqual([1.5, null])
    expect(byLabel.Forests).toEqual([1, 0.25])
    expect(rows.find((r) => r.label === 'Forests').share).toBe(true)
    expect(jaccard(comparison)).toBe(0.7391)
    expect(comparisonRows(null)).toEqual([])
  })
})

describe('comparison CSV', () => {
  // Two small areas; the second's habitat name holds a comma, so it is quoted.
  const comparison = {
    areas: [
      { area_km2: 82.3, species_present: 23, threatened_species: 2, eu_directive_species: 0, invasive_species: 1, dominant_habitat_l3: 'T13' },
      { area_km2: 25, species_present: 17, threatened_species: 1, eu_directive_species: 0, invasive_species: 0, dominant_habitat_l3: 'R22, dry' },
    ],
    species: { shared_by_all: 17 },
    indicators: [{ id: 'trait.height', title: 'Plant height', units: 'm', mean: [1.5, null] }],
    habitats_level1: [{ code: 'T', name: 'T Forests', coverage: [1, 0.25] }],
  }

  it('names its columns', () => {
    expect(COMPARISON_CSV_COLUMNS.map((c) => c.key)).toEqual(['group', 'label', 'units', 'a', 'b'])
    expect(comparisonCsv([])).toBe('group,quantity,units,area A,area B\r\n')
  })

  it('writes one line per comparison row, area A then area B', () => {
    expect(comparisonCsv(comparisonRows(comparison)).split('\r\n')).toEqual([
      'group,quantity,units,area A,area B',
      'Area,Area,km²,82.3,25',
      'Area,Species predicted,species,23,17',
      'Area,Threatened species,species,2,1',
      'Area,EU directive species,species,0,0',
      'Area,Invasive species,species,1,0',
      'Area,Dominant habitat (level 3),,T13,"R22, dry"',
      'Traits,Plant height,m,1.5,',
      'Habitats (level 1),Forests,share,1,0.25',
      '',
    ])
  })
})
