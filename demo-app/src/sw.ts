/**
 * The demo's service worker: Workbox's precaching runtime serves the app shell and the bundled
 * model from the cache, so after one visit the page and the model load with the network off.
 * `self.__WB_MANIFEST` is replaced at build time by the list of every built and public file with
 * a content hash (demo-app/precache-plugin.ts); Workbox re-downloads only files whose hash changed
 * and deletes caches of older Workbox versions.
 */
import { clientsClaim } from 'workbox-core';
import { cleanupOutdatedCaches, createHandlerBoundToURL, precacheAndRoute, type PrecacheEntry } from 'workbox-precaching';
import { NavigationRoute, registerRoute } from 'workbox-routing';

declare const self: { __WB_MANIFEST: PrecacheEntry[]; skipWaiting(): Promise<void> };

// A new version takes over at once: the demo keeps no state in the page that an update could break
// (checkpoints live in IndexedDB).
void self.skipWaiting();
clientsClaim();
cleanupOutdatedCaches();
precacheAndRoute(self.__WB_MANIFEST);
registerRoute(new NavigationRoute(createHandlerBoundToURL('index.html')));
