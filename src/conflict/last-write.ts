// The version of a destination's document: the write that made it as it is, found in the
// destination's own oplog, newest first. Asked only when a write meets a document other than
// the one its source changed (./resolve.ts), so the cost of the scan is paid on conflicts only.
//
// The last entry touching the document says who made it:
//   - an operation after a marker (../replicate/tag.ts) is mmm's: its version is the tag it
//     wrote (for a delete, the tag its marker lists);
//   - any other is a user's on this server: its version is its own entry's time (for a
//     transaction, the time of its last entry, which every reader of it is given).
// A document whose last write the oplog no longer holds is older than anything that can meet
// it: its version has no time (it loses to any write). The scan is bounded (SCAN_MS): a
// document whose last write it cannot reach in time is taken for one that old, and said so.

import type { Collection, Document, MongoClient, Timestamp } from 'mongodb';
import { MAX_TIME_MS_EXPIRED, serverErrorCode } from '../apply/transient.ts';
import { EXACT_DECODE } from '../bson/raw.ts';
import type { OplogEntry } from '../oplog/entry.ts';
import { deleteKey, loggedMarkerDeletes } from '../replicate/marker-deletes.ts';
import { carriedTag, MARKER_NAMESPACE, markerOrigin } from '../replicate/tag.ts';
import { parseTag, type Version } from './version.ts';

/**
 * `currentTag`: the `__mmm` of the document as the destination holds it, if any. `onSlowScan`
 * hears of a scan that gave up (the version is then taken for one older than the oplog).
 */
export async function lastVersion(client: MongoClient, serverId: string, ns: string, id: unknown, currentTag: unknown, onSlowScan?: () => void): Promise<Version> {
  const oplog = client.db('local').collection<OplogEntry>('oplog.rs');
  const touches = { ns, $or: [{ 'o._id': id }, { 'o2._id': id }] };
  const older = { ...(parseTag(currentTag) ?? { origin: serverId }), ts: null };
  let entry: OplogEntry | null;
  try {
    entry = await oplog
      .find({ $or: [touches, { 'o.applyOps': { $elemMatch: touches } }] } as Document, { ...EXACT_DECODE, sort: { $natural: -1 }, limit: 1, maxTimeMS: SCAN_MS })
      .next();
  } catch (err) {
    if (serverErrorCode(err) !== MAX_TIME_MS_EXPIRED) throw err;
    onSlowScan?.();
    return older;
  }
  if (!entry) return older;
  if (!Array.isArray(entry.o.applyOps)) return { ts: entry.ts, origin: serverId };
  const ops = await transactionOps(oplog, entry);
  const writer = lastWriter(ops, ns, id);
  if (writer.origin === undefined) return { ts: await commitTime(oplog, entry), origin: serverId };
  const tag = writer.tag === undefined ? undefined : parseTag(writer.tag);
  return tag?.origin === writer.origin ? tag : { ts: await commitTime(oplog, entry), origin: writer.origin };
}

type Oplog = Collection<OplogEntry>;

/**
 * The longest a scan for a document's last write may take: well inside a transaction's life
 * (60 s), since it runs while the transaction that decides is open. A write meeting a
 * concurrent one finds it near the oplog's end in milliseconds; 400,000 entries take about half
 * a second here.
 */
const SCAN_MS = 10_000;

/** The operations of the transaction `entry` belongs to, up to and including `entry`'s. */
async function transactionOps(oplog: Oplog, entry: OplogEntry): Promise<Document[]> {
  const chain: Document[][] = [entry.o.applyOps as Document[]];
  let previous = entry.prevOpTime?.ts;
  while (previous !== undefined && !previous.isZero()) {
    const before = await oplog.findOne({ ts: previous }, EXACT_DECODE);
    if (!before || !Array.isArray(before.o.applyOps)) break;
    chain.unshift(before.o.applyOps as Document[]);
    previous = before.prevOpTime?.ts;
  }
  return chain.flat();
}

/**
 * Whether the write logged at `ts` on this server is mmm's: it belongs to a transaction whose
 * first operation is a marker (anything that writes for mmm starts so). Asked of a write whose
 * tags alone make it look like a user's (./resolve.ts): a transaction of mmm's that spans
 * oplog entries (over 16 MB) gives a document's second write a time of its own. Only each
 * entry's link to the one before and its first operation are read.
 */
export async function madeByMmm(client: MongoClient, ts: Timestamp): Promise<boolean> {
  const oplog = client.db('local').collection<OplogEntry>('oplog.rs');
  const lean = { ...EXACT_DECODE, projection: { prevOpTime: 1, 'o.applyOps': { $slice: 1 } } };
  let entry = await oplog.findOne({ ts }, lean);
  for (;;) {
    if (!entry || !Array.isArray(entry.o.applyOps)) return false;
    const previous = entry.prevOpTime?.ts;
    if (previous === undefined || previous.isZero()) return (entry.o.applyOps[0] as Document | undefined)?.ns === MARKER_NAMESPACE;
    entry = await oplog.findOne({ ts: previous }, lean);
  }
}

/** The time readers are given for a transaction: that of its last entry (a partial one is followed on). */
async function commitTime(oplog: Oplog, entry: OplogEntry): Promise<Timestamp> {
  let last = entry;
  while (last.o.partialTxn === true) {
    // From `last` on: the oplog is read in `ts` order from there, not from its start.
    const next = await oplog.findOne({ ts: { $gt: last.ts }, 'prevOpTime.ts': last.ts }, { ...EXACT_DECODE, maxTimeMS: SCAN_MS });
    if (!next) break;
    last = next;
  }
  return last.ts;
}

/** Who made the last operation on the document among `ops`: mmm for an origin (with the tag it wrote), or a user. */
function lastWriter(ops: readonly Document[], ns: string, id: unknown): { origin?: string; tag?: string } {
  const key = deleteKey(id);
  let origin: string | undefined;
  let deletes: Map<string, string> | undefined;
  let found: { origin?: string; tag?: string } = {};
  // A transaction that writes a document twice gives both writes one tag, which the second then
  // leaves out of its diff (it changes nothing): the tag stands for both.
  let tagged: string | undefined;
  for (const op of ops) {
    const o = op.o as Document;
    if (op.ns === MARKER_NAMESPACE) {
      origin = markerOrigin(op as { op: string; o: Document }) ?? origin;
      deletes = loggedMarkerDeletes(op as { op: string; o: Document });
      tagged = undefined;
      continue;
    }
    if (op.ns !== ns || deleteKey(op.op === 'u' ? op.o2?._id : o._id) !== key) continue;
    const tag = (op.op === 'd' ? deletes?.get(key) : carriedTag(op as { op: string; o: Document })) ?? tagged;
    tagged = tag;
    found = origin === undefined ? {} : { origin, ...(tag === undefined ? {} : { tag }) };
  }
  return found;
}
