// @vitest-environment happy-dom
// The species and habitat browsers reach the API through the app's store (store.js -> api.js ->
// fetch), so the store keeps their state and only the newest answer shows.
import { afterEach, describe, expect, it, vi } from 'vitest'
import { createApp, nextTick } from 'vue'
import HabitatTree from '../src/components/HabitatTree.vue'
import SpeciesBrowser from '../src/components/SpeciesBrowser.vue'
import { store } from '../src/store.js'

const json = (body) => ({ ok: true, status: 200, statusText: 'OK', text: async () => JSON.stringify(body) })

// fetch stand-in: `answers(url)` gives a body, or a promise of one to answer later.
function stubFetch(answers) {
  const fetch = vi.fn(async (url) => json(await answers(url)))
  vi.stubGlobal('fetch', fetch)
  return fetch
}

let app = null
function mount(component, props) {
  const root = document.createElement('div')
  document.body.append(root)
  app = createApp(component, props)
  app.mount(root)
  return root
}

function type(root, text) {
  const input = root.querySelector('#species-search')
  input.value = text
  input.dispatchEvent(new Event('input'))
}

const hitNames = (root) => [...root.querySelectorAll('[data-testid="species-hits"] em')].map((e) => e.textContent)

afterEach(() => {
  app?.unmount()
  app = null
  document.body.innerHTML = ''
  vi.unstubAllGlobals()
})

describe('SpeciesBrowser', () => {
  it('searches through the store after a pause and lists the hits', async () => {
    const fetch = stubFetch(() => [{ id: 24, name: 'Quercus robur', family: 'Fagaceae', iucn: 'LC', match: 'prefix' }])
    const root = mount(SpeciesBrowser, { selectedId: null })
    type(root, ' Quer ')
    expect(fetch).not.toHaveBeenCalled() // not before the pause
    await vi.waitFor(() => expect(hitNames(root)).toEqual(['Quercus robur']))
    expect(fetch).toHaveBeenCalledTimes(1)
    expect(fetch.mock.calls[0][0]).toBe('/api/species?q=Quer&limit=20')
    expect(store.state.speciesSearch.hits.map((h) => h.id)).toEqual([24])
    expect(root.textContent).toContain('IUCN LC')
  })

  it('keeps the newest search when an older one answers later', async () => {
    let releaseOld
    const fetch = stubFetch((url) =>
      url.includes('q=Qu&')
        ? new Promise((resolve) => (releaseOld = () => resolve([{ id: 1, name: 'Quassia amara' }])))
        : [{ id: 24, name: 'Quercus robur' }],
    )
    const root = mount(SpeciesBrowser, { selectedId: null })
    type(root, 'Qu')
    await vi.waitFor(() => expect(fetch).toHaveBeenCalledTimes(1))
    type(root, 'Quer')
    await vi.waitFor(() => expect(hitNames(root)).toEqual(['Quercus robur']))
    releaseOld()
    await new Promise((resolve) => setTimeout(resolve, 20))
    await nextTick()
    expect(hitNames(root)).toEqual(['Quercus robur'])
  })

  it('shows an API error and clears the hits when the query is emptied', async () => {
    vi.stubGlobal('fetch', vi.fn(async () => ({ ok: false, status: 500, statusText: 'Internal Server Error', text: async () => '' })))
    const root = mount(SpeciesBrowser, { selectedId: null })
    type(root, 'Quer')
    await vi.waitFor(() => expect(root.querySelector('[role="alert"]')?.textContent).toContain('answered 500'))
    type(root, '')
    await nextTick()
    expect(root.querySelector('[role="alert"]')).toBe(null)
    expect(root.textContent).toContain('Type a few letters')
  })
})

describe('HabitatTree', () => {
  const tree = [
    { code: 'T', name: 'Forests', level: 1, mapped: true, children: [{ code: 'T1', name: 'Broadleaved forest', level: 2, mapped: true, children: [] }] },
    { code: 'R', name: 'Grasslands', level: 1, mapped: false, children: [] },
  ]

  it('loads the tree through the store on mount and lists the mapped habitats', async () => {
    const fetch = stubFetch(() => tree)
    const root = mount(HabitatTree, { selectedCode: null })
    await vi.waitFor(() => expect(root.querySelectorAll('.tree__label')).toHaveLength(1))
    expect(fetch.mock.calls.map((c) => c[0])).toEqual(['/api/habitats?depth=3'])
    expect(store.state.habitatTree.nodes).toEqual(tree)
    expect(root.querySelector('.tree__label').dataset.code).toBe('T')
    root.querySelector('.tree__toggle').click()
    await nextTick()
    expect([...root.querySelectorAll('.tree__label')].map((b) => b.dataset.code)).toEqual(['T', 'T1'])
  })

  it('shows why the tree could not load', async () => {
    vi.stubGlobal('fetch', vi.fn(async () => Promise.reject(new Error('offline'))))
    const root = mount(HabitatTree, { selectedCode: null })
    await vi.waitFor(() => expect(root.querySelector('[role="alert"]')?.textContent).toContain('Cannot reach the GeoFlora API'))
  })
})
