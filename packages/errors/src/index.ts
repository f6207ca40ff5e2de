/**
 * @webtune/errors: every error webtune throws, and the registry that lets each keep its class
 * across a worker boundary. Depends on nothing; importing it registers nothing.
 * @packageDocumentation
 */
export * from './errors.js';
