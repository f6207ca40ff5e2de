/**
 * webtune/federated: join federated rounds with a trainer: the client (clipped, noised adapter
 * deltas; privacy accounting; resumable uploads) and the protocol's types.
 * @packageDocumentation
 */
/// <reference types="@webgpu/types" preserve="true" />
export * from '@webtune/federated';
