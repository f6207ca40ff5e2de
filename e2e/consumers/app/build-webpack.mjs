// Builds the webpack app with webpack's Node API (webpack-cli is not needed) and writes its
// index.html with the entry's hashed file name; the model and text are copied from public/.
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import webpack from 'webpack';
import config from './webpack.config.mjs';

const stats = await new Promise((resolve, reject) => webpack(config, (err, s) => (err ? reject(err) : resolve(s))));
if (stats.hasErrors()) {
  console.error(stats.toString({ all: false, errors: true }));
  process.exit(1);
}
const entry = stats.toJson({ all: false, entrypoints: true }).entrypoints.main.assets.map((a) => a.name).filter((n) => n.endsWith('.js'));
const html = readFileSync(join(config.context, 'index.html'), 'utf8')
  .replace(/<script type="module" src="\.\/src\/main\.ts"><\/script>/, entry.map((f) => `<script src="./${f}"></script>`).join('\n'));
writeFileSync(join(config.output.path, 'index.html'), html);
cpSync(join(config.context, 'public'), config.output.path, { recursive: true });
console.log(`webpack: ${entry.join(', ')}`);
