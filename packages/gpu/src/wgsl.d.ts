// Each shader is imported as '<name>.wgsl.js': a module whose default export is the file's text.
// The package build writes those modules next to the compiled kernels (scripts/build-packages.mjs);
// in the repository, the Vite and esbuild plugins in scripts/workspace.mjs read the .wgsl file.
declare module '*.wgsl.js' {
  const source: string;
  export default source;
}
