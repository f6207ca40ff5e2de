/**
 * The two servers the browser lane starts (e2e/playwright.config.ts):
 *   dev:  Vite's dev server: the test pages under e2e/pages import the packages' sources;
 *   demo: the demo app as users get it: `vite build` served by `vite preview`, with its
 *         service worker (the dev server has none), so the offline test is about the real build.
 */
export const DEV_PORT = Number(process.env.WEBTUNE_E2E_PORT ?? 5199);
export const DEMO_PORT = Number(process.env.WEBTUNE_E2E_DEMO_PORT ?? 5198);
export const DEV_URL = `http://localhost:${DEV_PORT}`;
export const DEMO_URL = `http://localhost:${DEMO_PORT}`;
