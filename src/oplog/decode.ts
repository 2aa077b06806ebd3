// Decoding: oplog entries in, CRUD changes out, in the order they became visible.
//
// - `n` no-ops carry nothing to replicate, but they move the position (the primary writes one at
//   least every 10 s, so the checkpoint advances on an idle server).
// - Entries marked `fromMigrate` come from chunk migrations, not users: skipped.
// - `applyOps` entries are unrolled, also when one holds another. Inside a transaction (`lsid` +
//   `txnNumber`), a large transaction spans several entries: all but the last carry
//   `o.partialTxn: true` and the last carries `o.count`. Their operations are held until the
//   last entry arrives, because an uncommitted transaction must not be applied (OPLOG.md,
//   "Commands and batches").
// - mmm's own writes are recognised here: in an `applyOps`, the operations after a marker
//   (a write on `mmm.writes`, see ../replicate/tag.ts) came from the origin the marker names.
//   The markers themselves are not changes.
// - Other commands (DDL) are reported, not replicated.
//
// The decoder also says which position is safe to checkpoint: never past the first entry of a
// transaction that has not finished, or a restart would resume in its middle and lose its start.

import type { Document, Timestamp } from 'mongodb';
import { RawInsert, RawUpdate } from '../bson/lazy-document.ts';
import { UnsupportedOplogEntryError } from '../errors.ts';
import { deleteKey, loggedMarkerDeletes } from '../replicate/marker-deletes.ts';
import { carriedTag, MARKER_NAMESPACE, markerOrigin } from '../replicate/tag.ts';
import { documentId, type Change, type CrudOp, type OplogEntry } from './entry.ts';

/** A command entry the decoder did not replicate, for the caller to report. */
export interface SkippedCommand {
  ts: Timestamp;
  /** The database of the command (from `db.$cmd`). */
  db: string;
  /** The command name, e.g. `drop`, `renameCollection`, `createIndexes`. */
  name: string;
  o: Document;
}

export interface DecodedBatch {
  changes: Change[];
  commands: SkippedCommand[];
}

interface OpenTransaction {
  ops: UnrolledOp[];
  /** The position just before the transaction's first entry: where a restart must resume. */
  resumeBefore: Timestamp;
}

export class OplogDecoder {
  private readonly open = new Map<string, OpenTransaction>();
  private last: Timestamp;

  /** `start` is the position the reading starts after (the checkpoint). */
  constructor(start: Timestamp) {
    this.last = start;
  }

  /** The newest position a restart may resume from without losing anything decoded so far. */
  get safePosition(): Timestamp {
    let safe = this.last;
    for (const txn of this.open.values()) if (txn.resumeBefore.lessThan(safe)) safe = txn.resumeBefore;
    return safe;
  }

  /** Number of transactions whose final entry has not been read yet. */
  get openTransactions(): number {
    return this.open.size;
  }

  /**
   * The server read the oplog up to `ts` for this reader, and sent every entry up to there that
   * it asked for (../oplog/tailer.ts): the entries it left out need no decoding to be passed.
   */
  passed(ts: Timestamp): void {
    if (ts.greaterThan(this.last)) this.last = ts;
  }

  decode(entries: Iterable<OplogEntry>): DecodedBatch {
    const batch: DecodedBatch = { changes: [], commands: [] };
    for (const entry of entries) {
      this.decodeEntry(entry, batch);
      this.last = entry.ts;
    }
    return batch;
  }

  private decodeEntry(entry: OplogEntry, out: DecodedBatch): void {
    if (entry.fromMigrate) return;
    switch (entry.op) {
      case 'n':
        return;
      case 'i':
      case 'u':
      case 'd':
        out.changes.push(withPreImage(change(entry as CrudOp, entry, 0), entry.ui, entry.ts, 0));
        return;
      case 'c':
        if (Array.isArray(entry.o.applyOps)) this.decodeApplyOps(entry, out);
        else this.decodeCommand(entry, out);
        return;
      default:
        throw new UnsupportedOplogEntryError(`oplog entry at ${formatTs(entry.ts)} has unknown op '${String(entry.op)}'`);
    }
  }

  private decodeApplyOps(entry: OplogEntry, out: DecodedBatch): void {
    if (entry.o.prepare) {
      // Prepared transactions only exist in sharded clusters; their outcome comes in a later
      // commitTransaction/abortTransaction entry. Refuse rather than guess.
      throw new UnsupportedOplogEntryError(
        `prepared transaction at ${formatTs(entry.ts)}: mmm replicates replica sets, not shards`,
      );
    }
    const ops = unroll(entry.o.applyOps as Document[], entry, out);
    const key = transactionKey(entry);
    if (key === undefined) {
      // applyOps outside a transaction (e.g. a batched multi-document delete): apply as is.
      out.changes.push(...attributed(ops, entry));
      return;
    }
    let txn = this.open.get(key);
    if (entry.o.partialTxn) {
      if (!txn) {
        txn = { ops: [], resumeBefore: this.last };
        this.open.set(key, txn);
      }
      txn.ops.push(...ops);
      return;
    }
    this.open.delete(key);
    out.changes.push(...attributed(txn ? [...txn.ops, ...ops] : ops, entry));
  }

  private decodeCommand(entry: OplogEntry, out: DecodedBatch): void {
    const cmd = command(entry.ts, entry.ns, entry.o);
    const name = cmd.name;
    if (name === 'commitTransaction' || name === 'abortTransaction') {
      throw new UnsupportedOplogEntryError(
        `${name} of a prepared transaction at ${formatTs(entry.ts)}: mmm replicates replica sets, not shards`,
      );
    }
    out.commands.push(cmd);
  }
}

/** Where the source keeps the pre-image of an update or delete (if its collection keeps them). */
function withPreImage(c: Change, ui: CrudOp['ui'], ts: OplogEntry['ts'], applyOpsIndex: number | undefined): Change {
  if (c.op !== 'i' && ui !== undefined && applyOpsIndex !== undefined) c.preImage = { nsUUID: ui, ts, applyOpsIndex };
  return c;
}

function change(op: CrudOp, entry: OplogEntry, seq: number, origin?: string): Change {
  // An insert or an update kept as bytes (OplogEntry.raw, .rawUpdate) keeps them, its `o` still undecoded.
  let c: Change;
  if (op.raw || op.rawUpdate) {
    const kept = (op.raw ? new RawInsert(op.ns, op.raw) : new RawUpdate(op.ns, op.rawUpdate!)) as (RawInsert | RawUpdate) & Change;
    kept.ts = entry.ts;
    kept.seq = seq;
    c = kept;
  } else c = { op: op.op, ns: op.ns, o: op.o, ts: entry.ts, seq };
  if (op.o2) c.o2 = op.o2;
  if (entry.wall) c.wall = entry.wall;
  if (origin !== undefined) c.origin = origin;
  return c;
}

/**
 * The changes of one `applyOps` (a whole transaction), each attributed to the origin of the
 * marker before it, if any; the markers are left out. `seq` numbers the operations in order.
 */
function attributed(ops: readonly UnrolledOp[], entry: OplogEntry): Change[] {
  const changes: Change[] = [];
  let origin: string | undefined;
  let deletes: Map<string, string> | undefined;
  ops.forEach((op, seq) => {
    if (op.ns === MARKER_NAMESPACE) {
      origin = markerOrigin(op) ?? origin;
      deletes = loggedMarkerDeletes(op);
      return;
    }
    const c = withPreImage(change(op, entry, seq, origin), op.ui, op.entryTs, op.index);
    if (origin !== undefined) {
      // An insert kept as bytes is one of mmm's, and carries its tag (read from them if it is relayed, ../replicate/route.ts).
      const tag = op.op === 'd' ? deletes?.get(deleteKey(op.o._id)) : op.raw === undefined && carriedTag(op) === undefined ? earlierTag(ops, seq) : undefined;
      if (tag !== undefined) c.tag = tag;
    }
    changes.push(c);
  });
  return changes;
}

/**
 * The tag of an earlier write of mmm's on the same document in the same run of one origin: a
 * transaction that writes a document twice gives both writes one tag, which the second then
 * leaves out of its diff. Looked for only then (rare), going back to the run's marker.
 */
function earlierTag(ops: readonly UnrolledOp[], seq: number): string | undefined {
  const key = deleteKey(documentId(ops[seq]!));
  for (let k = seq - 1; k >= 0; k--) {
    const op = ops[k]!;
    if (op.ns === MARKER_NAMESPACE) return undefined;
    if (op.ns === ops[seq]!.ns && deleteKey(documentId(op)) === key) return carriedTag(op) ?? earlierTag(ops, k);
  }
  return undefined;
}

/** An operation of an `applyOps`, with its place: the entry holding it, and its index there (none when nested deeper). */
interface UnrolledOp extends CrudOp {
  entryTs: OplogEntry['ts'];
  index?: number;
}

/**
 * The CRUD operations of an `applyOps` array, in order, minus those from chunk migrations; an
 * `applyOps` inside it is unrolled in its place; other commands inside it (a collection created
 * within a transaction) are reported like any other command.
 */
function unroll(applyOps: Document[], entry: OplogEntry, out: DecodedBatch, nested = false): UnrolledOp[] {
  const ops: UnrolledOp[] = [];
  for (const [index, raw] of applyOps.entries()) {
    if (raw.fromMigrate || raw.op === 'n') continue;
    if (raw.op === 'c') {
      const o = raw.o as Document;
      if (Array.isArray(o.applyOps)) ops.push(...unroll(o.applyOps as Document[], entry, out, true));
      else out.commands.push(command(entry.ts, String(raw.ns), o));
      continue;
    }
    if (raw.op !== 'i' && raw.op !== 'u' && raw.op !== 'd') {
      throw new UnsupportedOplogEntryError(
        `applyOps at ${formatTs(entry.ts)} holds a '${String(raw.op)}' operation on ${String(raw.ns)}, which mmm cannot replicate`,
      );
    }
    if (raw instanceof RawInsert) {
      // An insert whose document came as bytes (./entry-bytes.ts): made for this, so placed as it is, `o` still undecoded.
      const op = raw as RawInsert & UnrolledOp;
      op.entryTs = entry.ts;
      if (!nested) op.index = index;
      ops.push(op);
      continue;
    }
    const op: UnrolledOp = { op: raw.op, ns: raw.ns as string, o: raw.o as Document, entryTs: entry.ts };
    if (raw.o2) op.o2 = raw.o2 as Document;
    if (raw.ui) op.ui = raw.ui as UnrolledOp['ui'];
    if (!nested) op.index = index;
    ops.push(op);
  }
  return ops;
}

function command(ts: Timestamp, ns: string, o: Document): SkippedCommand {
  return { ts, db: ns.slice(0, ns.indexOf('.')), name: Object.keys(o)[0] ?? '', o };
}

function transactionKey(entry: OplogEntry): string | undefined {
  if (!entry.lsid || entry.txnNumber === undefined) return undefined;
  return `${entry.lsid.id.toString('hex')}:${entry.txnNumber.toString()}`;
}

export function formatTs(ts: Timestamp): string {
  return `Timestamp(${ts.t}, ${ts.i})`;
}
