// Development stand-in for the GeoFlora back end: serves dist/ and fakes the API and tiles.
// Usage: node e2e/mock-server.mjs [port]
// To see failures in the UI: MOCK_LAYERS_STATUS=500 fails /api/layers, MOCK_TILES_STATUS=404 the tiles.
import { createServer } from 'node:http'
import { readFile, stat } from 'node:fs/promises'
import { extname, join, normalize, resolve, sep } from 'node:path'
import { fileURLToPath } from 'node:url'
import { deflateSync } from 'node:zlib'

const port = Number(process.argv[2] || 5174)
const dist = resolve(fileURLToPath(new URL('../dist', import.meta.url)))
const layersStatus = Number(process.env.MOCK_LAYERS_STATUS || 200)
const tilesStatus = Number(process.env.MOCK_TILES_STATUS || 200)

const BBOX = [10.0, 48.0, 10.7, 48.5] // west, south, east, north
const VIRIDIS = ['#440154', '#482878', '#3e4989', '#31688e', '#26828e',
  '#1f9e89', '#35b779', '#6ece58', '#b5de2b', '#fde725']
const HABITATS = [
  { value: 1, label: 'R22 Low and medium altitude hay meadow', color: '#9ccc65' },
  { value: 2, label: 'T13 Temperate hardwood riparian forest', color: '#2e7d32' },
  { value: 3, label: 'Q51 Tall-helophyte bed', color: '#4fc3f7' },
]

const catalog = {
  run: { id: 'mock-run-1', created_at: '2026-11-23T08:00:00Z', region: 'Mock Swabia' },
  layers: [
    {
      id: 'indicator.richness', kind: 'indicator', title: 'Species richness',
      description: 'Expected number of plant species per 50 m cell.', units: 'species',
      tiles_url: '/tiles/indicator.richness/tiles/WebMercatorQuad/{z}/{x}/{y}.png?colormap_name=viridis&rescale=0,120',
      bounds: BBOX, minzoom: 6, maxzoom: 16,
      legend: { type: 'continuous', min: 0, max: 120, colors: VIRIDIS, units: 'species' },
      wms_layer: 'indicator.richness',
    },
    {
      id: 'habitat.eunis3', kind: 'habitat', title: 'EUNIS habitat (level 3)',
      description: 'Most probable EUNIS level-3 habitat.', units: null,
      tiles_url: '/tiles/habitat.eunis3/tiles/WebMercatorQuad/{z}/{x}/{y}.png',
      bounds: BBOX, minzoom: 6, maxzoom: 16,
      legend: { type: 'categorical', items: HABITATS },
      wms_layer: 'habitat.eunis3',
    },
  ],
}

// ---- PNG tiles -------------------------------------------------------------------------------
const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1
  return c >>> 0
})

function crc32(buf) {
  let c = 0xffffffff
  for (const byte of buf) c = CRC_TABLE[(c ^ byte) & 0xff] ^ (c >>> 8)
  return (c ^ 0xffffffff) >>> 0
}

function chunk(type, data) {
  const head = Buffer.alloc(8)
  head.writeUInt32BE(data.length, 0)
  head.write(type, 4, 'ascii')
  const crc = Buffer.alloc(4)
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])), 0)
  return Buffer.concat([head, data, crc])
}

/** Encode RGBA pixels (Uint8Array, width*height*4) as a PNG. */
function encodePng(width, height, rgba) {
  const ihdr = Buffer.alloc(13)
  ihdr.writeUInt32BE(width, 0)
  ihdr.writeUInt32BE(height, 4)
  ihdr[8] = 8 // bit depth
  ihdr[9] = 6 // RGBA
  const raw = Buffer.alloc((width * 4 + 1) * height)
  for (let y = 0; y < height; y++) {
    raw[y * (width * 4 + 1)] = 0 // filter: none
    Buffer.from(rgba.buffer, y * width * 4, width * 4).copy(raw, y * (width * 4 + 1) + 1)
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(raw)),
    chunk('IEND', Buffer.alloc(0)),
  ])
}

const hex = (c) => [1, 3, 5].map((i) => parseInt(c.slice(i, i + 2), 16))

/** A 256x256 tile: coloured inside BBOX, transparent outside, like TiTiler with nodata. */
function renderTile(layerId, z, x, y) {
  const size = 256
  const rgba = new Uint8Array(size * size * 4)
  const n = 2 ** z
  for (let py = 0; py < size; py++) {
    const lat = (Math.atan(Math.sinh(Math.PI * (1 - (2 * (y + (py + 0.5) / size)) / n))) * 180) / Math.PI
    for (let px = 0; px < size; px++) {
      const lon = ((x + (px + 0.5) / size) / n) * 360 - 180
      if (lon < BBOX[0] || lon > BBOX[2] || lat < BBOX[1] || lat > BBOX[3]) continue
      const u = (lon - BBOX[0]) / (BBOX[2] - BBOX[0])
      const v = (lat - BBOX[1]) / (BBOX[3] - BBOX[1])
      const wave = 0.5 + 0.25 * Math.sin(u * 9) + 0.25 * Math.cos(v * 7)
      const color = layerId.startsWith('habitat')
        ? HABITATS[Math.floor(wave * 2.999)].color
        : VIRIDIS[Math.min(9, Math.floor(wave * 10))]
      const [r, g, b] = hex(color)
      rgba.set([r, g, b, 255], (py * size + px) * 4)
    }
  }
  return encodePng(size, size, rgba)
}

// ---- HTTP ------------------------------------------------------------------------------------
const TYPES = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.css': 'text/css',
  '.svg': 'image/svg+xml', '.png': 'image/png', '.json': 'application/json',
}

function sendJson(res, status, body) {
  res.writeHead(status, { 'Content-Type': 'application/json' })
  res.end(JSON.stringify(body))
}

async function serveStatic(res, pathname) {
  const file = normalize(join(dist, decodeURIComponent(pathname)))
  const inside = file === dist || file.startsWith(dist + sep)
  const target = inside && (await stat(file).catch(() => null))?.isFile() ? file : join(dist, 'index.html')
  try {
    const body = await readFile(target)
    res.writeHead(200, { 'Content-Type': TYPES[extname(target)] || 'application/octet-stream' })
    res.end(body)
  } catch {
    res.writeHead(404, { 'Content-Type': 'text/plain' })
    res.end('dist/ not built: run npm run build')
  }
}

const TILE = /^\/tiles\/([\w.-]+)\/tiles\/WebMercatorQuad\/(\d+)\/(\d+)\/(\d+)\.png$/

const server = createServer(async (req, res) => {
  const { pathname } = new URL(req.url, 'http://localhost')
  if (pathname === '/api/health') {
    return sendJson(res, 200, { status: 'ok', version: '0.1.0', live_run: catalog.run.id })
  }
  if (pathname === '/api/layers') {
    if (layersStatus !== 200) return sendJson(res, layersStatus, { detail: 'Mock failure of the layer catalog' })
    return sendJson(res, 200, catalog)
  }
  const tile = TILE.exec(pathname)
  if (tile) {
    const [, id, z, x, y] = tile
    if (!catalog.layers.some((l) => l.id === id)) return sendJson(res, 404, { detail: `Unknown layer ${id}` })
    if (tilesStatus !== 200) return sendJson(res, tilesStatus, { detail: 'Mock failure of the tiles' })
    res.writeHead(200, { 'Content-Type': 'image/png', 'Cache-Control': 'no-store' })
    return res.end(renderTile(id, Number(z), Number(x), Number(y)))
  }
  if (pathname.startsWith('/api/') || pathname.startsWith('/tiles/')) {
    return sendJson(res, 404, { detail: 'Not Found' })
  }
  return serveStatic(res, pathname)
})

server.listen(port, '127.0.0.1', () => {
  console.log(`mock GeoFlora on http://127.0.0.1:${port} (dist: ${dist})`)
})
