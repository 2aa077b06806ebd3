// How mmm's own writes are told apart from a user's, and where they came from.
//
// The marker. mmm makes every batch of writes on a destination in a transaction whose first
// statement is a write on mmm's own collection `mmm.writes`: an upsert `$inc` of the document
// `{_id: {origin, source, lane}}`. A transaction is logged as one `applyOps` entry (or a chain
// of `partialTxn` entries) listing its operations in the order they ran, so that entry says
// both which writes are mmm's (those after a marker) and for which origin (the marker's `_id`;
// a batch that carries writes of several origins, in a ring, has a marker before each run of
// them). The `$inc` changes the marker every time, so the server always logs it (a write that
// changes nothing is not logged, OPLOG.md). Nothing in the replicated documents is read: a
// user's write, whatever it does to a document mmm wrote (a replacement that copies `__mmm`,
// a pipeline that rebuilds it, a diff that leaves it out), is logged outside such a
// transaction and so is a user's write. Only a transaction that writes `mmm.writes` itself
// could pass for mmm, and `replicate` refuses that database.
//
// The lane keeps concurrent transactions of one loop (parallel partitions) on documents of
// their own: two transactions writing one document conflict, and one would have to retry. The
// run (this process) does the same for a process that died with a transaction open: its
// uncommitted marker stays locked until the server ends the transaction (up to a minute),
// and must not hold up the next process. A loop removes the markers of earlier runs when it
// starts (SourceLoop), so the collection stays a few documents per loop.
//
// `__mmm` is the original's bookkeeping field, kept on every document mmm writes:
// `<origin server UUID>:<t>:<i>`, where `Timestamp(t, i)` is the write's entry in its origin's
// oplog: the document's version (../conflict/version.ts). A write relayed through another
// server (a ring) keeps the origin's time, read from the `__mmm` the relaying server wrote.
// Loop breaking does not depend on it; conflict resolution does.
//
// A delete leaves no document to carry a tag, so the marker before a run of writes that holds
// deletes lists their tags (./marker-deletes.ts).

import os from 'node:os';
import type { Document, Timestamp } from 'mongodb';
// Types only: `mmm --help` loads this module (../check/privileges.ts), and none of the driver.
import type { RawDocument } from '../bson/lazy-document.ts';

export const TAG_FIELD = '__mmm';

/** mmm's own database on every destination: the markers, and the writes a destination refused. */
export const MMM_DATABASE = 'mmm';
export const MARKER_COLLECTION = 'writes';
export const MARKER_NAMESPACE = `${MMM_DATABASE}.${MARKER_COLLECTION}`;
/** Where a destination keeps the writes it refused (../apply/refused.ts). */
export const REFUSED_COLLECTION = 'refused';
/** Where a server keeps the versions of its that lost a conflict (../conflict/record.ts). */
export const CONFLICTS_COLLECTION = 'conflicts';
/** Deletes that met no document where several servers replicate into one collection (../conflict/tombstones.ts). */
export const TOMBSTONES_COLLECTION = 'tombstones';

export function makeTag(origin: string, ts: Timestamp): string {
  return `${origin}:${ts.t}:${ts.i}`;
}

/** The `_id` of the marker a loop's lane writes before writes that came from `origin`. */
export interface MarkerId {
  origin: string;
  /** The source server the loop reads (the origin, or the server that relays its writes). */
  source: string;
  lane: number;
  /** This process: RUN_ID. */
  run: string;
}

/** Tells this process's markers from those of earlier (or other) runs: pid, host, start time. */
export const RUN_ID = `${process.pid}@${os.hostname()}/${Date.now().toString(36)}`;

/**
 * The origin named by an operation on the marker collection, as logged inside an `applyOps`:
 * an insert (the marker's first write, an upsert) holds the document, an update holds `o2._id`.
 * Undefined for an operation of another shape (never written by mmm).
 */
export function markerOrigin(op: { op: string; o: Document; o2?: Document }): string | undefined {
  const id = (op.op === 'i' ? op.o._id : op.o2?._id) as Partial<MarkerId> | undefined;
  return typeof id?.origin === 'string' ? id.origin : undefined;
}

/**
 * The tag a write logged on a server carries in the data it wrote: the document of an insert or
 * a replacement, or the `__mmm` a diff set. Undefined for a delete, or a write that sets none.
 */
export function carriedTag(op: { op: string; o: Document; raw?: RawDocument }): string | undefined {
  if (op.op === 'd') return undefined;
  // An insert kept as bytes: read from them, not decoded for it.
  if (op.raw) return op.raw.tag;
  const o = op.o;
  const value = Object.hasOwn(o, '_id') ? o[TAG_FIELD] : (o.diff?.u?.[TAG_FIELD] ?? o.diff?.i?.[TAG_FIELD]);
  return typeof value === 'string' ? value : undefined;
}
