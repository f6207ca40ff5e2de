// Types of scripts/workspace.mjs for the TypeScript files that import it (vite.config.ts, tests).
import type { Plugin } from 'vite';

export const root: string;
export function workspacePackages(): Array<{ dir: string; name: string; version: string; manifest: Record<string, unknown> }>;
export function sourceAliases(): Record<string, string>;
export function workspaceVitePlugin(): Plugin;
export function workspaceEsbuildPlugin(): { name: string; setup(build: unknown): void };
