// The Vite app: no webtune-specific settings.
export default { base: './', build: { outDir: 'dist-vite' } };
