/**
 * Release hygiene that a typo would break silently: the packages move together (one version, and
 * each @webtune dependency pinned to exactly it), every package ships its licence, and the two maps
 * from public names to sources inside the repository (tsconfig.json's paths for tsc, and
 * scripts/workspace.mjs for Vite, Vitest and esbuild) agree with each other and with the exports.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { root, sourceAliases, workspacePackages } from '../../../scripts/workspace.mjs';

const packages = workspacePackages();

describe('the workspace', () => {
  it('has one version, and every internal dependency pins exactly it', () => {
    const versions = new Set(packages.map((p) => p.version));
    expect(versions.size).toBe(1);
    const [version] = versions;
    for (const pkg of packages) {
      const deps = (pkg.manifest['dependencies'] ?? {}) as Record<string, string>;
      for (const [name, range] of Object.entries(deps)) {
        if (name.startsWith('@webtune/') || name === 'webtune') expect(range, `${pkg.name} -> ${name}`).toBe(version);
      }
    }
    expect(readFileSync(join(root, 'CHANGELOG.md'), 'utf8')).toContain(`## ${version}`);
  });

  it('ships a licence and a README in every package, and exports built files only', () => {
    for (const pkg of packages) {
      expect(existsSync(join(pkg.dir, 'LICENSE')), pkg.name).toBe(true);
      expect(existsSync(join(pkg.dir, 'README.md')), pkg.name).toBe(true);
      for (const target of Object.values(pkg.manifest['exports'] as Record<string, Record<string, string>>)) {
        expect(Object.keys(target)[0], pkg.name).toBe('types');
        for (const file of Object.values(target)) expect(file, pkg.name).toMatch(/^\.\/dist\/.*\.(d\.ts|js)$/);
      }
    }
  });

  it("tsconfig.json's paths are the same map as scripts/workspace.mjs' aliases, and each source exists", () => {
    const text = readFileSync(join(root, 'tsconfig.json'), 'utf8').replace(/^\s*\/\/.*$/gm, '');
    const paths = (JSON.parse(text) as { compilerOptions: { paths: Record<string, string[]> } }).compilerOptions.paths;
    const aliases = Object.fromEntries(Object.entries(sourceAliases()).map(([k, v]) => [k, [`./${relative(root, v)}`]]));
    expect(paths).toEqual(aliases);
    for (const [name, [file]] of Object.entries(aliases)) expect(existsSync(join(root, file!)), name).toBe(true);
  });
});
