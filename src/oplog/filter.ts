// Which oplog entries a loop reads: a query the server applies, so that entries of unrelated
// collections are neither sent nor decoded. A loop needs:
// - the writes on its linked namespaces, and on their time-series buckets collections (whose
//   inserts ../replicate/commands.ts warns about);
// - every command entry (`op: 'c'`): transactions and other `applyOps` (`admin.$cmd`), which may
//   hold linked writes and mmm's markers (../replicate/tag.ts) that say who made the writes after
//   them, also in an earlier entry of a large transaction; and the DDL the warnings name
//   (`<db>.$cmd`: drop, rename, indexes...). Commands are few next to writes; a transaction on
//   other collections is decoded and yields no change.
// No-ops are not needed to keep the checkpoint moving: the tailer learns from the server how far
// it has read (./tailer.ts, `scanned`), matching entries or not; a reader that does not follow
// that (./skip-namespace.ts) takes them (`noops`), the source's periodic no-op at least.

import type { Document } from 'mongodb';

const BUCKETS = 'system.buckets.';

export function oplogFilter(namespaces: readonly string[], options: { noops: boolean }): Document {
  const written = namespaces.flatMap((ns) => {
    const dot = ns.indexOf('.');
    return [ns, `${ns.slice(0, dot)}.${BUCKETS}${ns.slice(dot + 1)}`];
  });
  return { $or: [{ ns: { $in: written } }, { op: options.noops ? { $in: ['c', 'n'] } : 'c' }] };
}
