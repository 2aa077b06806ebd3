// Documents as they were before each update or delete: MongoDB's pre-images
// (`changeStreamPreAndPostImages`, 6.0+). With the source's, a destination can tell whether a
// write was made on the document it holds; with its own, whether it wrote that document itself
// since (./resolve.ts). A server keeps them in `config.system.preimages`, one per update or
// delete, until its oplog no longer holds the entry; turning them on costs each update or
// delete one more write, of the whole document.

import { Long, Timestamp, type Binary, type Document, type MongoClient } from 'mongodb';
import { MAX_TIME_MS_EXPIRED, NAMESPACE_EXISTS, serverErrorCode } from '../apply/transient.ts';
import { decodeValue, forEachElement, keyElements, nameIs, type ElementSpan } from '../bson/raw.ts';
import type { PreImageKey } from '../oplog/entry.ts';
import { TAG_FIELD } from '../replicate/tag.ts';

const NAMESPACE_NOT_FOUND = 26;

/** Makes each collection keep pre-images from now on, creating it (empty) if it does not exist. */
export async function keepPreImages(client: MongoClient, namespaces: readonly string[]): Promise<void> {
  for (const ns of namespaces) {
    const dot = ns.indexOf('.');
    const db = client.db(ns.slice(0, dot));
    const name = ns.slice(dot + 1);
    const option = { changeStreamPreAndPostImages: { enabled: true } };
    try {
      await db.command({ collMod: name, ...option });
    } catch (err) {
      if (serverErrorCode(err) !== NAMESPACE_NOT_FOUND) throw err;
      await db.createCollection(name, option).catch(async (created: unknown) => {
        // Created meanwhile (by a user's first insert): then it needs the option too.
        if (serverErrorCode(created) !== NAMESPACE_EXISTS) throw created;
        await db.command({ collMod: name, ...option });
      });
    }
  }
}

/**
 * The pre-images the source still holds for `keys`, as BSON, by preImageId. One range of the
 * collection's `_id` index per collection (its UUID, then the entries' times, then the index):
 * a batch's keys lie in one stretch of the oplog, and every update and delete of a linked
 * collection in that stretch is among them.
 */
export async function readPreImages(client: MongoClient, keys: readonly PreImageKey[]): Promise<Map<string, Buffer>> {
  const found = new Map<string, Buffer>();
  const ranges = new Map<string, { nsUUID: Binary; first: Timestamp; last: Timestamp }>();
  for (const key of keys) {
    const collection = uuidKey(key.nsUUID);
    const range = ranges.get(collection);
    if (!range) ranges.set(collection, { nsUUID: key.nsUUID, first: key.ts, last: key.ts });
    else if (key.ts.lessThan(range.first)) range.first = key.ts;
    else if (key.ts.greaterThan(range.last)) range.last = key.ts;
  }
  const images = client.db('config').collection('system.preimages');
  for (const { nsUUID, first, last } of ranges.values()) {
    const from = { nsUUID, ts: first, applyOpsIndex: Long.ZERO };
    const to = { nsUUID, ts: last, applyOpsIndex: Long.MAX_VALUE };
    const cursor = images.find({ _id: { $gte: from, $lte: to } } as Document, { raw: true, batchSize: 10_000, hint: { _id: 1 } });
    for await (const raw of cursor) {
      const bytes = raw as unknown as Buffer;
      const { id, image } = imageSpans(bytes);
      // A copy: the reply the cursor read it from is let go at once, not kept for the batch.
      if (id && image) found.set(storedId(bytes.subarray(id.valueStart, id.end)), Buffer.from(bytes.subarray(image.valueStart, image.end)));
    }
  }
  return found;
}

/** A write the destination made on a document, as its pre-image tells it: when, and the tag the document had before. */
export interface EarlierState {
  id: unknown;
  ts: Timestamp;
  tag: unknown;
}

/** How long listing a collection may take: as long as a read of pre-images (./resolve.ts). */
const LIST_MS = 2_000;

/** The UUID of collection `ns` (its pre-images are kept under it); undefined: there is none. */
export async function collectionUuid(client: MongoClient, ns: string): Promise<Binary | undefined> {
  const dot = ns.indexOf('.');
  const [info] = await client
    .db(ns.slice(0, dot))
    .listCollections({ name: ns.slice(dot + 1) }, { nameOnly: false, maxTimeMS: LIST_MS })
    .toArray();
  return (info as { info?: { uuid?: Binary } } | undefined)?.info?.uuid;
}

/** A stretch of a collection's pre-images by the time of their writes; a bound left out is open. */
export interface PreImageRange {
  /** From this time on (inclusive). */
  from?: Timestamp;
  /** After this time (exclusive). */
  after?: Timestamp;
  /** Up to this time (inclusive). */
  upTo?: Timestamp;
}

/**
 * The pre-images the collection of UUID `nsUUID` kept in `range`, in the order of their writes:
 * each document's `_id` decoded as stored and its `__mmm` before the write. Its pre-images are
 * kept when it is the source of a link that resolves, or when a link into it does (./resolve.ts
 * asks, to know whether it wrote a document itself). `ids`: only of those documents. Undefined:
 * not read within `maxTimeMS`.
 */
export async function writtenIn(client: MongoClient, nsUUID: Binary, range: PreImageRange, ids: readonly unknown[], maxTimeMS: number): Promise<EarlierState[] | undefined> {
  try {
    const found = await client
      .db('config')
      .collection('system.preimages')
      .find({ _id: rangeBounds(nsUUID, range), 'preImage._id': { $in: ids } } as Document, {
        projection: IMAGE_FIELDS,
        sort: { _id: 1 },
        hint: { _id: 1 },
        raw: true,
        maxTimeMS,
      })
      .toArray();
    return (found as unknown as Uint8Array[]).map(earlierState);
  } catch (err) {
    if (serverErrorCode(err) === MAX_TIME_MS_EXPIRED) return undefined;
    throw err;
  }
}

/**
 * The pre-images the collection of UUID `nsUUID` kept after `after`, as writtenIn gives them,
 * at most `limit` of them, read at a snapshot of majority-committed data, and that snapshot's
 * time: no write before it is left to commit, so a later read from that time on misses none.
 * Undefined: not read within `maxTimeMS`.
 */
export async function writtenAfter(
  client: MongoClient,
  nsUUID: Binary,
  after: Timestamp,
  limit: number,
  maxTimeMS: number,
): Promise<{ states: EarlierState[]; readAt: Timestamp } | undefined> {
  const config = client.db('config');
  // The pre-images stay BSON in the reply, each read by earlierState: thousands a batch.
  const options = { fieldsAsRaw: { firstBatch: true, nextBatch: true }, promoteValues: false } as const;
  try {
    let reply = await config.command(
      { find: 'system.preimages', filter: { _id: rangeBounds(nsUUID, { after }) }, projection: IMAGE_FIELDS, sort: { _id: 1 }, hint: { _id: 1 }, limit, batchSize: 50_000, readConcern: { level: 'snapshot' }, maxTimeMS },
      options,
    );
    const readAt = reply.cursor.atClusterTime as Timestamp;
    const states = (reply.cursor.firstBatch as Uint8Array[]).map(earlierState);
    // Run as commands, not through the driver's cursor, for the reply's `atClusterTime`; a
    // snapshot read's getMores read at its time.
    const cursor = reply.cursor.id as unknown;
    try {
      while (!isZero(reply.cursor.id)) {
        reply = await config.command({ getMore: reply.cursor.id, collection: 'system.preimages', batchSize: 50_000 }, options);
        for (const image of reply.cursor.nextBatch as Uint8Array[]) states.push(earlierState(image));
      }
    } catch (err) {
      await config.command({ killCursors: 'system.preimages', cursors: [cursor] }).catch(() => undefined);
      throw err;
    }
    return { states, readAt };
  } catch (err) {
    if (serverErrorCode(err) === MAX_TIME_MS_EXPIRED) return undefined;
    throw err;
  }
}

const IMAGE_FIELDS = { 'preImage._id': 1, [`preImage.${TAG_FIELD}`]: 1 };

/** A pre-image of IMAGE_FIELDS, as BSON: its write's time, the document's `_id` and tag before it. */
function earlierState(bytes: Uint8Array): EarlierState {
  const { id, image } = imageSpans(bytes);
  if (!id || !image) throw new Error('a pre-image without its _id or its document');
  const before = bytes.subarray(image.valueStart, image.end);
  const { id: docId, tag } = keyElements(before);
  if (!docId) throw new Error('a pre-image of a document without _id');
  return { id: decodeValue(before, docId), ts: storedTime(bytes.subarray(id.valueStart, id.end)), tag: tag && decodeValue(before, tag) };
}

/** The `_id` and `preImage` elements of a stored pre-image. */
function imageSpans(bytes: Uint8Array): { id: ElementSpan | undefined; image: ElementSpan | undefined } {
  const found: { id: ElementSpan | undefined; image: ElementSpan | undefined } = { id: undefined, image: undefined };
  forEachElement(bytes, (type, start, nameEnd, valueStart, end) => {
    if (nameIs(bytes, start + 1, nameEnd, ID)) found.id = { type, start, valueStart, end };
    else if (nameIs(bytes, start + 1, nameEnd, PRE_IMAGE)) found.image = { type, start, valueStart, end };
  });
  return found;
}

function rangeBounds(nsUUID: Binary, range: PreImageRange): Document {
  return {
    ...(range.after ? { $gt: { nsUUID, ts: range.after, applyOpsIndex: Long.MAX_VALUE } } : { $gte: { nsUUID, ts: range.from ?? OLDEST, applyOpsIndex: Long.ZERO } }),
    $lte: { nsUUID, ts: range.upTo ?? NEWEST, applyOpsIndex: Long.MAX_VALUE },
  };
}

function isZero(id: unknown): boolean {
  return id instanceof Long ? id.isZero() : Number(id) === 0;
}

const OLDEST = new Timestamp({ t: 0, i: 0 });
const NEWEST = new Timestamp({ t: 0xffffffff, i: 0xffffffff });

/**
 * The key readPreImages gives a pre-image: its write's time and index, without the collection,
 * since one oplog entry's writes each have an index of their own, whatever their collections.
 */
export function preImageId(key: PreImageKey): string {
  return `${key.ts.high >>> 0}:${key.ts.low >>> 0}:${key.applyOpsIndex}`;
}

/** preImageId of a stored `_id` (`{nsUUID, ts, applyOpsIndex}`, as BSON), read without decoding it. */
function storedId(bytes: Uint8Array): string {
  let high = 0;
  let low = 0;
  let index = 0;
  const view = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  forEachElement(view, (type, start, nameEnd, at) => {
    if (nameIs(view, start + 1, nameEnd, TS)) [low, high] = [view.readUInt32LE(at), view.readUInt32LE(at + 4)];
    else if (nameIs(view, start + 1, nameEnd, APPLY_OPS_INDEX)) index = type === BSON_INT32 ? view.readInt32LE(at) : Number(view.readBigInt64LE(at));
  });
  return `${high}:${low}:${index}`;
}

/** The write's time in a stored `_id`. */
function storedTime(bytes: Uint8Array): Timestamp {
  let time: Timestamp | undefined;
  const view = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  forEachElement(view, (type, start, nameEnd, at) => {
    if (type !== BSON_TIMESTAMP || !nameIs(view, start + 1, nameEnd, TS)) return false;
    time = new Timestamp({ t: view.readUInt32LE(at + 4), i: view.readUInt32LE(at) });
    return true;
  });
  if (!time) throw new Error('a pre-image whose _id has no ts');
  return time;
}

const ID = Buffer.from('_id');
const PRE_IMAGE = Buffer.from('preImage');
const TS = Buffer.from('ts');
const APPLY_OPS_INDEX = Buffer.from('applyOpsIndex');
const BSON_INT32 = 0x10;
const BSON_TIMESTAMP = 0x11;

/** A collection UUID as a string key: its 16 bytes as latin1. */
export function uuidKey(uuid: Binary): string {
  const b = uuid.buffer;
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('latin1');
}
