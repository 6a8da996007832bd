// End-to-end test of the web app against a live GeoFlora server with a computed run.
// Usage: node e2e/app.mjs <baseUrl> <artifactsDir>
// Draws a rectangle, waits for the report, downloads the JSON export and checks its content,
// switches modules (report tabs, legends, uncertainty), reads the values at a point, reopens the
// permalink, uploads a GeoJSON area, compares two areas, and checks the phone layout. Screenshots
// of each stage go to <artifactsDir>. Prints one JSON line; exit 0 on success, 1 on failure.
import { readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { createRun } from './harness.mjs'

const { baseUrl, artifactsDir, result, remaining, within, step, launch, watch, context, run } = createRun('e2e/app.mjs', {
  totalMs: 240_000,
  failOnPageErrors: true,
})
result.screenshots = []
// Each wait gets at most this long, so a stuck step fails fast with its name.
const STEP_MS = 45_000
let page = null

const check = (cond, message) => {
  if (!cond) throw new Error(message)
}

async function shot(name, target = page) {
  const path = join(artifactsDir, `${name}.png`)
  await target.screenshot({ path, timeout: within(STEP_MS) })
  result.screenshots.push(path)
}

const testid = (id) => `[data-testid="${id}"]`

async function waitOverlayLoaded() {
  await page.waitForFunction(() => document.querySelector('[data-testid="map"]')?.dataset.overlay === 'loaded', null, {
    timeout: within(STEP_MS),
    polling: 200,
  })
}

/** Legend facts: its title, whether it draws a ramp or swatches, and how many swatches. */
async function legendFacts() {
  const legend = page.locator(testid('legend'))
  check(await legend.isVisible(), 'the legend is not visible')
  return legend.evaluate((el) => ({
    title: el.querySelector('h2')?.textContent.trim(),
    ramp: /gradient/.test(getComputedStyle(el.querySelector('.legend__ramp') ?? el).backgroundImage),
    swatches: el.querySelectorAll('.legend__swatch').length,
  }))
}

/** Click two points at fractions of the map box (after pressing the rectangle tool). */
async function drawRectangle(from, to) {
  await page.locator(testid('draw-rectangle')).click()
  const box = await page.locator(testid('map')).boundingBox()
  await page.mouse.click(box.x + box.width * from[0], box.y + box.height * from[1])
  await page.waitForTimeout(150)
  await page.mouse.move(box.x + box.width * to[0], box.y + box.height * to[1], { steps: 4 })
  await page.mouse.click(box.x + box.width * to[0], box.y + box.height * to[1])
}

async function main() {
  step('launch')
  page = await launch({ width: 1280, height: 800 }, { acceptDownloads: true })
  await rm(join(artifactsDir, 'failure.png'), { force: true }) // from an earlier failed run
  page.setDefaultTimeout(STEP_MS)

  step('open page')
  await page.goto(baseUrl, { waitUntil: 'domcontentloaded', timeout: within(STEP_MS) })
  await page.waitForSelector(`${testid('layer-list')} input, ${testid('error')}`, { timeout: within(STEP_MS) })
  check((await page.locator(testid('error')).count()) === 0, 'the app shows an API error')
  await waitOverlayLoaded()
  result.layer = await page.locator(`${testid('layer-list')} input:checked`).inputValue()
  const homeLegend = await legendFacts()
  check(homeLegend.ramp, 'the home layer legend has no colour ramp')

  step('draw a rectangle')
  await drawRectangle([0.3, 0.3], [0.7, 0.7])
  await page.locator(testid('report-panel')).waitFor({ timeout: within(STEP_MS) })
  await page.locator(testid('report-meta')).waitFor({ timeout: within(STEP_MS) })
  check((await page.locator(testid('report-error')).count()) === 0, 'the report failed')
  const cards = await page.locator('.card').count()
  check(cards >= 5, `the report summary shows ${cards} cards`)
  result.report_meta = (await page.locator(testid('report-meta')).innerText()).trim()
  await page.waitForTimeout(300)
  await shot('1-report-1280x800')

  step('export JSON')
  const [download] = await Promise.all([
    page.waitForEvent('download', { timeout: within(STEP_MS) }),
    page.locator(testid('export-json')).click(),
  ])
  const jsonPath = join(artifactsDir, 'report.json')
  await download.saveAs(jsonPath)
  const report = JSON.parse(await readFile(jsonPath, 'utf8'))
  check(/^[0-9a-f]{32}$/.test(report.id), 'the export has no report id')
  check(report.status === 'done', `export status ${report.status}`)
  // The server normalises areas to a MultiPolygon: here one polygon, the rectangle's 4 corners.
  const polygons = report.geometry?.type === 'MultiPolygon' ? report.geometry.coordinates : [report.geometry?.coordinates]
  check(polygons.length === 1 && polygons[0][0].length === 5, `the export geometry is not the drawn rectangle: ${JSON.stringify(report.geometry).slice(0, 120)}`)
  for (const key of ['home', 'species', 'habitats', 'indicators', 'traits']) check(report[key], `the export lacks ${key}`)
  check(report.area.km2 > 0 && report.area.cells > 0, 'the export area is empty')
  check(report.species.items.length > 0 && report.species.items.length === report.species.total, 'the export species list is not complete')
  check(report.indicators.items.some((e) => e.id === 'indicator.richness' && e.mean > 0), 'no richness in the export')
  const tableRows = await page.evaluate(async (id) => (await (await fetch(`/api/reports/${id}`)).json()).home.species_present, report.id)
  check(tableRows === report.home.species_present, 'the export and the report disagree')
  Object.assign(result, { report_id: report.id, species: report.species.total, area_km2: report.area.km2 })

  step('CSV and GeoJSON exports')
  const exports = await page.evaluate(async () => {
    const out = {}
    for (const a of document.querySelectorAll('.exports a')) {
      const r = await fetch(a.href)
      out[a.dataset.testid] = { status: r.status, type: r.headers.get('content-type'), head: (await r.text()).slice(0, 60) }
    }
    return out
  })
  for (const [name, e] of Object.entries(exports)) check(e.status === 200, `${name} answered ${e.status}`)
  check(exports['export-geojson'].head.includes('FeatureCollection') || exports['export-geojson'].head.includes('Feature'), 'GeoJSON export is not GeoJSON')
  check(exports['export-csv-species'].type.startsWith('text/csv'), 'species CSV is not CSV')

  step('switch modules')
  const seen = {}
  for (const module of ['species', 'habitats', 'indicators', 'traits', 'home']) {
    await page.locator(testid(`module-${module}`)).click()
    await page.locator(testid(`report-${module}`)).waitFor({ timeout: within(STEP_MS) })
    seen[module] = { legend: await legendFacts(), rows: await page.locator(`${testid(`report-${module}`)} tbody tr`).count() }
  }
  check(seen.species.rows === report.species.total, `species tab shows ${seen.species.rows} of ${report.species.total}`)
  check(seen.habitats.legend.swatches > 0 && /habitat/i.test(seen.habitats.legend.title), 'habitat legend has no classes')
  check(seen.indicators.rows === report.indicators.items.length, 'indicator tab rows differ from the export')
  check(seen.traits.legend.ramp && /height|trait|leaf/i.test(seen.traits.legend.title), 'trait legend is wrong')
  result.modules = Object.fromEntries(Object.entries(seen).map(([k, v]) => [k, v.legend.title]))

  step('uncertainty toggle')
  await page.locator(testid('module-indicators')).click()
  await page.locator(`${testid('uncertainty-toggle')} input`).check()
  await waitOverlayLoaded()
  const ci = await legendFacts()
  check(/2-sigma/.test(ci.title), `uncertainty legend title: ${ci.title}`)
  await shot('2-indicators-uncertainty')
  await page.locator(`${testid('uncertainty-toggle')} input`).uncheck()

  step('species fact sheet')
  await page.locator(testid('module-species')).click()
  const wanted = report.species.items[0].name
  await page.locator(testid('species-search')).fill(wanted.slice(0, 6))
  await page.locator(`${testid('species-hits')} button`, { hasText: wanted }).first().click()
  await page.locator(testid('species-sheet')).waitFor()
  check((await page.locator('#species-sheet-title').innerText()).trim() === wanted, 'the fact sheet is not the chosen species')
  await waitOverlayLoaded()
  const speciesLegend = await legendFacts()
  check(speciesLegend.title === wanted && speciesLegend.ramp, `the map does not show ${wanted}: legend "${speciesLegend.title}"`)
  await shot('3-species-sheet')

  step('habitat fact sheet')
  await page.locator(testid('module-habitats')).click()
  // The area's dominant level-1 habitat: its fact sheet, then the map of only its cells.
  const dominant = report.habitats.levels['1'][0].code
  await page.locator(`${testid('habitat-tree')} [data-code="${dominant}"]`).click()
  await page.locator(testid('habitat-sheet')).waitFor()
  check((await page.locator('#habitat-sheet-title').innerText()).startsWith(dominant), 'the habitat sheet is not the clicked class')
  await page.locator(`${testid('class-only')} input`).check()
  await waitOverlayLoaded()
  const only = await legendFacts()
  check(only.swatches === 1 && only.title.includes('where predicted'), `class-only legend: ${JSON.stringify(only)}`)
  check((await page.locator('.map-view__notes .note--error').count()) === 0, 'class-only tiles failed to load')
  await shot('3b-habitat-only')
  await page.locator(`${testid('class-only')} input`).uncheck()

  step('values at a point')
  await page.locator(testid('module-indicators')).click()
  const box = await page.locator(testid('map')).boundingBox()
  await page.mouse.click(box.x + box.width * 0.5, box.y + box.height * 0.5)
  await page.locator(`${testid('point-values')} table`).waitFor({ timeout: within(STEP_MS) })
  const values = await page.locator(`${testid('point-values')} tr`).allInnerTexts()
  check(values.some((v) => /Species richness/.test(v) && /\d/.test(v)), `no richness value at the point: ${values.join(' | ')}`)
  result.point_rows = values.length
  await page.waitForTimeout(400) // the popup fades in
  await shot('4-point-values')
  await page.keyboard.press('Escape')

  step('permalink')
  const link = page.url()
  check(link.includes(`r=${report.id}`) && /[#&]v=/.test(link) && /[#&]l=/.test(link), `permalink lacks area/view/layer: ${link}`)
  const second = await context().newPage()
  watch(second)
  await second.goto(link, { waitUntil: 'domcontentloaded' })
  await second.locator(testid('report-meta')).waitFor({ timeout: within(STEP_MS) })
  const secondLayer = await second.locator(`${testid('layer-list')} input:checked`).inputValue()
  check(link.includes(`l=${encodeURIComponent(secondLayer)}`) || link.includes(`l=${secondLayer}`), 'the permalink layer was not restored')
  await second.close()
  result.permalink = link.slice(link.indexOf('#'))

  step('keyboard')
  await page.locator(testid('module-home')).focus()
  await page.keyboard.press('ArrowRight')
  check((await page.locator(`${testid('module-species')}[aria-selected="true"]`).count()) === 1, 'arrow keys do not move the module tabs')

  step('upload GeoJSON and compare')
  const ring = polygons[0][0]
  const [w, s] = [Math.min(...ring.map((p) => p[0])), Math.min(...ring.map((p) => p[1]))]
  const [e, n] = [Math.max(...ring.map((p) => p[0])), Math.max(...ring.map((p) => p[1]))]
  const half = { type: 'FeatureCollection', features: [{ type: 'Feature', properties: {}, geometry: { type: 'Polygon',
    coordinates: [[[w, s], [(w + e) / 2, s], [(w + e) / 2, n], [w, n], [w, s]]] } }] }
  const uploadPath = join(artifactsDir, 'upload.geojson')
  await writeFile(uploadPath, JSON.stringify(half))
  await page.locator(`${testid('compare-toggle')}`).check()
  await page.locator(testid('upload-input')).setInputFiles(uploadPath)
  await page.locator(`${testid('comparison')} table`).waitFor({ timeout: within(STEP_MS) })
  const compareText = await page.locator(testid('comparison')).innerText()
  check(/Species shared by both/.test(compareText), 'no comparison summary')
  check((await page.locator('.geoflora-area--b').count()) > 0, 'area B is not drawn')
  await shot('5-comparison')

  step('meta-tile pick with the keyboard')
  // The map now fits both areas, so its centre is inside the mapped region: Enter on the
  // Meta-tile button, then Enter on the (focused) map picks the meta-tile at the centre.
  await page.locator(testid('draw-metatile')).focus()
  await page.keyboard.press('Enter')
  check((await page.evaluate(() => document.activeElement?.dataset.testid)) === 'map', 'the map is not focused for picking')
  await page.keyboard.press('Enter')
  await page.waitForFunction(
    () => /Meta-tile E\d{4}N\d{4}/.test(document.querySelector('[data-testid="report-meta"]')?.textContent ?? '') ||
      document.querySelector('[data-testid="report-error"]'),
    null,
    { timeout: within(STEP_MS) },
  )
  check((await page.locator(testid('report-error')).count()) === 0, `meta-tile report failed: ${await page.locator(testid('report-error')).innerText().catch(() => '')}`)
  result.metatile = (await page.locator(testid('report-meta')).innerText()).trim()
  await page.waitForTimeout(300)
  await shot('6-metatile-report')

  step('phone layout')
  const phone = await context().newPage()
  watch(phone)
  await phone.setViewportSize({ width: 390, height: 844 })
  await phone.goto(link, { waitUntil: 'domcontentloaded' })
  await phone.locator(testid('report-meta')).waitFor({ timeout: within(STEP_MS) })
  await phone.waitForTimeout(500)
  await shot('7-phone-390x844', phone)
  await phone.screenshot({ path: join(artifactsDir, '8-phone-full.png'), fullPage: true })
  result.screenshots.push(join(artifactsDir, '8-phone-full.png'))
  const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth)
  check(overflow <= 1, `the phone page scrolls sideways by ${overflow} px`)
  const mapBox = await phone.locator(testid('map')).boundingBox()
  check(mapBox.width >= 380 && mapBox.height >= 300, `phone map is ${mapBox.width}x${mapBox.height}`)
  await phone.close()

}

run(main, async () => {
  if (page) await shot('failure')
})
