// The destination's own writes on one collection, as its pre-images tell them (./preimages.ts),
// for ./resolve.ts to ask which of a batch's documents it wrote since a given time.
//
// Asking the server afresh for every batch made it scan all its pre-images from the batch's
// earliest write on, again and again: a batch behind by seconds scanned seconds of the
// destination's writes, mmm's own among them, once per partition. So each pre-image is read once
// and kept, from the earliest time a batch asked for (less a few seconds) on; a batch reads only
// the new ones, and each partition then only those committed since, of its own documents.
//
// What is kept must miss no write: a write can commit after a later one (its time is taken
// first), so a read of the newest state may see a write and miss one before it that is still to
// commit, and a read that starts after the later one would miss it for good. The kept
// pre-images are therefore read with read concern "snapshot": majority-committed data at one
// time, before which nothing is left to commit. One exception: a transaction over 16 MB is
// logged as several entries, its pre-images show only once all are majority-committed, and a
// snapshot can fall between them. Its times are taken as one block within one second. So after
// each snapshot the oplog is looked through (each entry once) for a partial entry of such a
// transaction on the collection, in the snapshot's second: where there is one, only what came
// before that second is kept, and the next read starts there; where there is none, all that the
// snapshot shows. What came after, each partition reads itself, after its documents.

import type { Binary, Document, MongoClient } from 'mongodb';
import { Timestamp } from 'mongodb';
import { MAX_TIME_MS_EXPIRED, serverErrorCode } from '../apply/transient.ts';
import { collectionUuid, uuidKey, writtenAfter, writtenIn, type EarlierState } from './preimages.ts';

/** A batch that asks from this far before what is kept reads that stretch itself; the kept ones start this far before the earliest asked for. */
const SLACK_SECONDS = 5;
/** The most pre-images kept (about 540 bytes each, measured): beyond, what is kept is let go, and batches behind it read their own stretch, as before. */
const MOST_KEPT = 50_000;

/** Every pre-image of the collection after `from`, up to `readAt` (from <= readAt), by document. */
interface Kept {
  nsUUID: Binary;
  /** nsUUID as a string: a collection dropped and created again is another. */
  uuid: string;
  from: Timestamp;
  readAt: Timestamp;
  byDocument: Map<string, EarlierState[]>;
  size: number;
}

export class DestinationHistory {
  private kept: Kept | undefined;
  /** The read of new pre-images in flight: partitions of one batch wait on one read. */
  private reading: Promise<boolean> | undefined;
  /** How far the oplog was looked through for partial entries on the collection (settledUpTo), under its UUID; the last found. */
  private looked: { uuid: string; upTo: Timestamp; partial: Timestamp | undefined } | undefined;

  constructor(
    private readonly ns: string,
    /** The key ./resolve.ts gives a document of this collection by its `_id`. */
    private readonly keyOf: (id: unknown) => string,
    private readonly mostKept = MOST_KEPT,
  ) {}

  /**
   * For the documents `ids`, the writes the destination made on them from `since` on, in order
   * for each document, read after the caller's own read of them: undefined when they could not
   * be read within `maxTimeMS` (for each of at most three reads). `refreshed`: the caller's
   * refresh(), which needs no order with its own read and can go on beside it.
   */
  async writtenSince(client: MongoClient, ids: readonly unknown[], since: Timestamp, maxTimeMS: number, refreshed: Promise<boolean>): Promise<EarlierState[] | undefined> {
    if (!(await refreshed)) return undefined;
    // Taken at once, before a read of another caller's changes what is kept.
    if (!this.kept) return [];
    const { nsUUID, from, readAt, byDocument } = this.kept;
    const kept: EarlierState[] = [];
    for (const id of ids) {
      for (const state of byDocument.get(this.keyOf(id)) ?? []) if (!state.ts.lessThan(since) && !state.ts.greaterThan(readAt)) kept.push(state);
    }
    let older: EarlierState[] | undefined = [];
    if (!since.greaterThan(from)) older = await writtenIn(client, nsUUID, { from: since, upTo: from }, ids, maxTimeMS);
    const newer = older && (await writtenIn(client, nsUUID, { after: readAt }, ids, maxTimeMS));
    // Each document's writes stay in order: the three stretches follow one another.
    return older && newer && [...older, ...kept, ...newer];
  }

  /** Brings what is kept up to a new snapshot, one read for all the callers meanwhile; false: it ran out of time. */
  async refresh(client: MongoClient, since: Timestamp, maxTimeMS: number): Promise<boolean> {
    if (this.reading) return this.reading;
    this.reading = this.read(client, since, maxTimeMS).finally(() => (this.reading = undefined));
    return this.reading;
  }

  private async read(client: MongoClient, since: Timestamp, maxTimeMS: number): Promise<boolean> {
    // Asked once per read, not per caller: a collection dropped and created again (a new UUID)
    // is read afresh from the next read on.
    let nsUUID: Binary | undefined;
    try {
      nsUUID = await collectionUuid(client, this.ns);
    } catch (err) {
      if (serverErrorCode(err) === MAX_TIME_MS_EXPIRED) return false;
      throw err;
    }
    if (!nsUUID) {
      this.kept = undefined;
      return true;
    }
    const uuid = uuidKey(nsUUID);
    let kept = this.kept?.uuid === uuid ? this.kept : undefined;
    const start = kept?.readAt ?? secondsBefore(since, SLACK_SECONDS + 1);
    // One more than is kept at most: then they are too many, and none is.
    const read = await writtenAfter(client, nsUUID, start, this.mostKept + 1, maxTimeMS);
    if (read === undefined) return false;
    // Up to what the snapshot shows whole (above): later ones are read again after it.
    const safe = await this.settledUpTo(client, nsUUID, uuid, read.readAt, maxTimeMS);
    if (safe === undefined) return false;
    if (!kept) kept = { nsUUID, uuid, from: start, readAt: start, byDocument: new Map(), size: 0 };
    for (const state of read.states) {
      if (state.ts.greaterThan(safe)) break;
      const key = this.keyOf(state.id);
      const list = kept.byDocument.get(key);
      if (list) list.push(state);
      else kept.byDocument.set(key, [state]);
      kept.size++;
    }
    // A source whose clock runs ahead asks from after the snapshot: nothing is kept before `start` either way.
    kept.readAt = safe.greaterThan(start) ? safe : start;
    // Past the most kept, or a read that stopped short of its snapshot (it had more), none is kept.
    if (kept.size > this.mostKept || read.states.length > this.mostKept) kept = { nsUUID, uuid, from: kept.readAt, readAt: kept.readAt, byDocument: new Map(), size: 0 };
    else {
      const early = secondsBefore(since, SLACK_SECONDS);
      // At most once per second the batches move on.
      if (early.t > kept.from.t) forgetUpTo(kept, early.greaterThan(kept.readAt) ? kept.readAt : early);
    }
    this.kept = kept;
    return true;
  }

  /**
   * Up to when a snapshot read at `readAt` showed every pre-image of the collection: `readAt`,
   * unless the oplog holds, in that second and at or before `readAt`, a partial entry of a
   * transaction writing the collection (one over 16 MB, whose other entries may come after
   * `readAt` and whose pre-images show only with them): then the start of the second.
   * Undefined: the oplog could not be read within `maxTimeMS`.
   */
  private async settledUpTo(client: MongoClient, nsUUID: Binary, uuid: string, readAt: Timestamp, maxTimeMS: number): Promise<Timestamp | undefined> {
    const second = new Timestamp({ t: readAt.t, i: 0 });
    let looked = this.looked?.uuid === uuid ? this.looked : undefined;
    // Every entry up to `readAt` is committed (majority-committed, even): one look at each is enough.
    if (!looked || looked.upTo.lessThan(readAt)) {
      const ts: Document = !looked || looked.upTo.lessThan(second) ? { $gte: second, $lte: readAt } : { $gt: looked.upTo, $lte: readAt };
      let found: Document | null;
      try {
        found = await client
          .db('local')
          .collection('oplog.rs')
          .findOne({ ts, 'o.partialTxn': true, 'o.applyOps.ui': nsUUID }, { projection: { ts: 1 }, maxTimeMS });
      } catch (err) {
        if (serverErrorCode(err) === MAX_TIME_MS_EXPIRED) return undefined;
        throw err;
      }
      looked = { uuid, upTo: readAt, partial: (found?.ts as Timestamp | undefined) ?? looked?.partial };
      this.looked = looked;
    }
    return looked.partial?.t === readAt.t ? second : readAt;
  }
}

/** Lets go of what was written up to `time` (at most readAt). */
function forgetUpTo(kept: Kept, time: Timestamp): void {
  for (const [key, states] of kept.byDocument) {
    const keep = states.findIndex((s) => s.ts.greaterThan(time));
    if (keep === 0) continue;
    if (keep < 0) kept.byDocument.delete(key);
    else kept.byDocument.set(key, states.slice(keep));
    kept.size -= keep < 0 ? states.length : keep;
  }
  kept.from = time;
}

function secondsBefore(ts: Timestamp, seconds: number): Timestamp {
  return new Timestamp({ t: Math.max(0, ts.t - seconds), i: 0 });
}
