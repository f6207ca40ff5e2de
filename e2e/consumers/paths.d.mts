export const CONSUMERS_DIR: string;
export const APP_DIR: string;
export const REPORT: string;
export const VITE_APP_PORT: number;
export const WEBPACK_APP_PORT: number;
export const ESBUILD_APP_PORT: number;
