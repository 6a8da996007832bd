// Browser smoke test: open the app, make sure a layer is selected and really drawn.
// Usage: node e2e/smoke.mjs <baseUrl> <artifactsDir>
// Needs Debian Chromium (/usr/bin/chromium, or CHROMIUM_PATH) and no network: OSM failing is the
// offline case and must pass. Prints one JSON line; exit 0 when the layer is drawn, 1 otherwise.
import { join } from 'node:path'
import { createRun } from './harness.mjs'

const LAYER_RADIOS = '[data-testid="layer-list"] input[type="radio"]'
const OVERLAY_TILES = '.geoflora-overlay img.leaflet-tile-loaded'
const MIN_COLOURED_PIXELS = 16

const { baseUrl, artifactsDir, result, remaining, step, launch, context, run } = createRun('e2e/smoke.mjs', {
  totalMs: 60_000,
})
const screenshot = join(artifactsDir, 'smoke.png')

/** Pixels of every loaded overlay tile, counted in the page (same origin, so no canvas taint). */
function countTilePixels(selector) {
  const canvas = document.createElement('canvas')
  const ctx = canvas.getContext('2d', { willReadFrequently: true })
  let tiles = 0
  let opaque = 0
  let coloured = 0
  for (const img of document.querySelectorAll(selector)) {
    if (!img.complete || img.naturalWidth === 0) continue
    tiles += 1
    canvas.width = img.naturalWidth
    canvas.height = img.naturalHeight
    ctx.clearRect(0, 0, canvas.width, canvas.height)
    ctx.drawImage(img, 0, 0)
    const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data
    for (let i = 0; i < data.length; i += 4) {
      if (data[i + 3] === 0) continue
      opaque += 1
      const chroma = Math.max(data[i], data[i + 1], data[i + 2]) - Math.min(data[i], data[i + 1], data[i + 2])
      if (chroma >= 16) coloured += 1
    }
  }
  return { tiles, opaque, coloured }
}

async function main() {
  step('launch')
  const page = await launch()

  step('open page')
  await page.goto(baseUrl, { waitUntil: 'domcontentloaded', timeout: remaining() })

  step('wait for layer list')
  await page.waitForSelector(`${LAYER_RADIOS}, [data-testid="error"]`, { timeout: remaining() })
  const apiError = page.locator('[data-testid="error"]')
  if (await apiError.count()) {
    throw new Error(`the app shows an error: ${(await apiError.innerText()).trim()}`)
  }
  result.layers = await page.locator(LAYER_RADIOS).count()

  step('select a layer')
  if ((await page.locator(`${LAYER_RADIOS}:checked`).count()) === 0) {
    await page.locator(LAYER_RADIOS).first().check({ timeout: remaining() })
  }
  result.layer = await page.locator(`${LAYER_RADIOS}:checked`).inputValue()

  step('wait for overlay tiles')
  await page.waitForFunction(
    () => document.querySelector('[data-testid="map"]')?.dataset.overlay === 'loaded',
    null,
    { timeout: remaining(), polling: 200 },
  )
  if ((await page.locator(OVERLAY_TILES).count()) === 0) {
    const notes = (await page.locator('.map-view__notes').innerText()).replace(/\s+/g, ' ').trim()
    throw new Error(`the overlay finished loading without a single tile${notes ? ` (${notes})` : ''}`)
  }

  step('check overlay pixels')
  const pixels = await page.evaluate(countTilePixels, OVERLAY_TILES)
  Object.assign(result, { tiles: pixels.tiles, opaque_pixels: pixels.opaque, coloured_pixels: pixels.coloured })
  if (pixels.coloured < MIN_COLOURED_PIXELS) {
    throw new Error(
      `overlay tiles loaded (${pixels.tiles}) but only ${pixels.coloured} coloured non-transparent pixels`,
    )
  }

  step('check legend')
  const legend = page.locator('[data-testid="legend"]')
  if (!(await legend.isVisible())) throw new Error('the legend is not visible')
  const legendDrawn = await legend.evaluate(
    (el) =>
      /gradient/.test(getComputedStyle(el.querySelector('.legend__ramp') ?? el).backgroundImage) ||
      el.querySelectorAll('.legend__swatch').length > 0,
  )
  if (!legendDrawn) throw new Error('the legend has neither a colour ramp nor swatches')

  step('wait for basemap')
  // Not a failure if undecided: the layer is what this test is about; the screenshot shows the rest.
  await page
    .waitForFunction(() => document.querySelector('[data-testid="map"]')?.dataset.basemap !== 'pending', null, {
      timeout: Math.min(12_000, remaining() - 5000),
    })
    .catch(() => {})
  result.basemap = await page.locator('[data-testid="map"]').getAttribute('data-basemap')
  await page.waitForTimeout(500)

  step('screenshot')
  await page.screenshot({ path: screenshot, timeout: remaining() })
  result.screenshot = screenshot
}

run(main, async () => {
  const page = context()?.pages()[0]
  if (page) {
    await page.screenshot({ path: screenshot, timeout: 5000 })
    result.screenshot = screenshot
  }
})
