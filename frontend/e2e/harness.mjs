// What the browser tests share: Debian Chromium through playwright-core, the time budget, the
// one-line JSON result, console errors, and clean-up. No network is needed (OSM failing is the
// offline case, and its errors are not page errors).
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { chromium } from 'playwright-core'

export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium'
export const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
]
const NETWORK_NOISE = /openstreetmap|ERR_NAME_NOT_RESOLVED|ERR_INTERNET|ERR_NETWORK/i

/**
 * A browser test run of `script` (its name, for the usage line) with `totalMs` in all. Reads
 * `<baseUrl> <artifactsDir>` from the command line. Returns helpers; `run(main)` runs the test.
 */
export function createRun(script, { totalMs, failOnPageErrors = false }) {
  const [baseUrl, artifactsArg] = process.argv.slice(2)
  if (!baseUrl || !artifactsArg) {
    console.error(`usage: node ${script} <baseUrl> <artifactsDir>`)
    process.exit(1)
  }
  const artifactsDir = resolve(artifactsArg)
  const started = Date.now()
  const result = { ok: false, url: baseUrl, step: 'start' }
  const pageErrors = []
  let context = null
  let userDataDir = null

  // Distinct messages only, and few, so the result stays one readable line.
  const noteError = (message) => {
    if (!pageErrors.includes(message) && pageErrors.length < 10) pageErrors.push(message)
  }
  const remaining = () => Math.max(1000, totalMs - (Date.now() - started))

  /** Launch Chromium with a fresh profile; returns its first page, listening for errors. */
  async function launch(viewport = { width: 1280, height: 800 }, options = {}) {
    await mkdir(artifactsDir, { recursive: true })
    userDataDir = await mkdtemp(join(tmpdir(), 'geoflora-e2e-'))
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: ARGS,
      viewport,
      timeout: remaining(),
      ...options,
    })
    const page = context.pages()[0] ?? (await context.newPage())
    watch(page)
    return page
  }

  /** Note a page's uncaught errors and console errors (other than the missing network). */
  function watch(page) {
    page.on('pageerror', (err) => noteError(err.message))
    page.on('console', (msg) => {
      if (msg.type() === 'error' && !NETWORK_NOISE.test(msg.text())) noteError(msg.text())
    })
  }

  async function finish(code) {
    result.page_errors = pageErrors
    result.elapsed_ms = Date.now() - started
    console.log(JSON.stringify(result))
    try {
      await context?.close()
    } catch {}
    if (userDataDir) await rm(userDataDir, { recursive: true, force: true }).catch(() => {})
    process.exit(code)
  }

  /** Run `main()`; on failure `onFailure()` may save a screenshot. Exits 0 or 1. */
  function run(main, onFailure = async () => {}) {
    const watchdog = setTimeout(() => {
      result.error = `timed out after ${totalMs / 1000} s at step "${result.step}"`
      console.error(`${script} FAILED: ${result.error}`)
      finish(1)
    }, totalMs)
    main()
      .then(() => {
        clearTimeout(watchdog)
        if (failOnPageErrors && pageErrors.length) {
          result.ok = false
          result.error = `page errors: ${pageErrors.join(' | ')}`
          return finish(1)
        }
        result.step = 'done'
        result.ok = true
        return finish(0)
      })
      .catch(async (err) => {
        clearTimeout(watchdog)
        result.error = `${result.step}: ${err.message.split('\n')[0]}`
        console.error(`${script} FAILED: ${result.error}`)
        try {
          await onFailure()
        } catch {}
        return finish(1)
      })
  }

  return {
    baseUrl,
    artifactsDir,
    result,
    remaining,
    /** At most `ms`, and no more than what is left. */
    within: (ms) => Math.min(ms, remaining()),
    step: (name) => (result.step = name),
    launch,
    watch,
    context: () => context,
    run,
  }
}
