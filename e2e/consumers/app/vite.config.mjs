// The Vite app: no webtune-specific settings. `vite preview` serves each built app (Vite, webpack,
// esbuild) with the Content-Security-Policy the README documents, so the tests prove it is enough.
export default {
  base: './',
  build: { outDir: 'dist-vite' },
  preview: { headers: { 'Content-Security-Policy': "default-src 'self'; script-src 'self'; worker-src 'self'; connect-src 'self'" } },
};
