import { defineConfig } from 'vite'
import vue from '@vitejs/plugin-vue'

// `npm run dev` proxies the back end's paths to a running GeoFlora server.
const backend = process.env.GEOFLORA_BACKEND || 'http://127.0.0.1:8000'
const proxied = ['/api', '/tiles', '/wms', '/wmts', '/docs', '/openapi.json']

export default defineConfig({
  base: '/',
  plugins: [vue()],
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    // The offline outlines (world-atlas countries, ~750 kB) are a lazy chunk loaded only offline.
    chunkSizeWarningLimit: 800,
  },
  server: {
    proxy: Object.fromEntries(proxied.map((path) => [path, backend])),
  },
  test: {
    include: ['tests/**/*.test.js'],
    environment: 'node',
  },
})
