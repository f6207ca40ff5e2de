// The webpack 5 app: production mode, the same sources as the Vite app; nothing webtune-specific.
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

export default {
  mode: 'production',
  context: here,
  entry: './src/main.ts',
  output: { path: join(here, 'dist-webpack'), filename: '[name].[contenthash].js', publicPath: 'auto', clean: false },
  resolve: { extensions: ['.ts', '.js'] },
  module: { rules: [{ test: /\.ts$/, loader: join(here, 'ts-transpile-loader.cjs') }] },
  performance: { hints: false },
};
