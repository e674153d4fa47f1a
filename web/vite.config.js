// Builds the demo into the Python package (lighthmr_ros/web/static), served by `lighthmr serve`.
// JSX goes through esbuild (no React plugin needed); `npm run dev` proxies /api to a running server.
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

const outDir = fileURLToPath(new URL('../lighthmr_ros/web/static', import.meta.url));

export default defineConfig({
  base: './',
  esbuild: { jsx: 'automatic' },
  build: {
    outDir,
    emptyOutDir: true,
    chunkSizeWarningLimit: 1200,
    rollupOptions: { output: { manualChunks: { three: ['three'] } } },
  },
  server: { proxy: { '/api': 'http://127.0.0.1:8000' } },
});
