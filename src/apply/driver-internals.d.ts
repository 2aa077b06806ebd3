// The one module of the driver's internals mmm reads (./write-commands.ts): typed as unknown, since
// nothing guarantees its shape from one driver version to the next; the code checks it.
declare module 'mongodb/lib/cmap/commands.js' {
  export const DocumentSequence: unknown;
}
