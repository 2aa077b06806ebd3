// Concurrent writes of several servers on shared documents, and what a converged end looks like:
// the rule a version wins by (stated here again, apart from src/conflict/version.ts, so that the
// tests do not check the code with itself), each server's documents as bytes without `__mmm`, the
// records of `mmm.conflicts` and what the policy requires of each, and a seeded mix of the writes
// users make on documents every server holds.

import { BSON, Double, Int32, MongoServerError, type Collection, type Document, type MongoClient, type Timestamp } from 'mongodb';
import { splitTag } from './bson.ts';
import { seededRandom } from './random-updates.ts';

/** A write as the conflicts contract names it: its place in its origin's oplog, and that origin. */
export interface WriteVersion {
  /** null: older than the origin's oplog. */
  ts: Timestamp | null;
  origin: string;
}

/** Last writer wins: the larger `ts`, then the larger origin UUID; a version with no `ts` loses to one with. */
export function lwwBeats(a: WriteVersion, b: WriteVersion): boolean {
  if (a.ts === null || b.ts === null) return a.ts !== null || (b.ts === null && a.origin > b.origin);
  if (!a.ts.equals(b.ts)) return a.ts.greaterThan(b.ts);
  return a.origin > b.origin;
}

export const showVersion = (v: WriteVersion) => `${v.origin}@${v.ts ? `${v.ts.t}:${v.ts.i}` : 'null'}`;

/** The newest entry `client`'s oplog holds for `ns`: the write just made there, when nothing else writes to it. */
export async function lastWriteTs(client: MongoClient, ns: string): Promise<Timestamp> {
  const entry = await client.db('local').collection('oplog.rs').find({ ns }).sort({ $natural: -1 }).limit(1).next();
  if (!entry) throw new Error(`no oplog entry for ${ns}`);
  return entry.ts as Timestamp;
}

/** The BSON bytes of a document, `__mmm` removed, or null when it is absent. */
export async function untagged(collection: Collection<Document>, id: unknown): Promise<Buffer | null> {
  const raw = await collection.find({ _id: id as never }, { raw: true }).next();
  return raw ? splitTag(raw as unknown as Uint8Array).rest : null;
}

/** Every document of a collection as BSON bytes without `__mmm`, by `_id` (as extended JSON). */
export async function untaggedAll(collection: Collection<Document>): Promise<Map<string, Buffer>> {
  const docs = (await collection.find({}, { raw: true }).sort({ _id: 1 }).toArray()) as unknown as Uint8Array[];
  return new Map(
    docs.map((bytes) => {
      const { rest } = splitTag(bytes);
      return [BSON.EJSON.stringify(BSON.deserialize(rest, { promoteValues: false })._id), rest];
    }),
  );
}

export const showBytes = (bytes: Buffer | null | undefined) => (bytes ? BSON.EJSON.stringify(BSON.deserialize(bytes, { promoteValues: false })) : 'absent');

/** A document as bytes without `__mmm`, or null: the form a server's copy is compared in. */
export const untaggedDoc = (doc: Document | null | undefined) => (doc ? splitTag(BSON.serialize(doc)).rest : null);

/** A document that is not the same on every server: its `_id` (as extended JSON), and every server's copy. */
export interface Difference {
  id: string;
  /** One line, every server's copy in extended JSON (types shown): what a failed convergence prints. */
  text: string;
}

export function differences(byServer: Map<string, Map<string, Buffer>>): Difference[] {
  const ids = new Set([...byServer.values()].flatMap((docs) => [...docs.keys()]));
  const found: Difference[] = [];
  for (const id of [...ids].sort()) {
    const copies = [...byServer].map(([server, docs]) => [server, docs.get(id)] as const);
    const first = copies[0]![1];
    if (copies.every(([, bytes]) => (bytes && first ? bytes.equals(first) : bytes === first))) continue;
    found.push({ id, text: `_id ${id}: ${copies.map(([server, bytes]) => `${server} ${showBytes(bytes)}`).join(' | ')}` });
  }
  return found;
}

/** A document of `mmm.conflicts` (README, "Conflicts"). */
export type { StoredConflict as ConflictRecord } from '../../src/status/conflict-records.ts';
import type { StoredConflict as ConflictRecord } from '../../src/status/conflict-records.ts';

/** The records a server keeps of `ns`, oldest first, values unpromoted (so documents keep their types). */
export async function conflictRecords(client: MongoClient, ns: string): Promise<ConflictRecord[]> {
  const records = client.db('mmm').collection<ConflictRecord>('conflicts');
  return records.find({ ns }, { promoteValues: false }).sort({ at: 1, _id: 1 }).toArray() as Promise<ConflictRecord[]>;
}

/** The writes made on `id`, oldest first by version: what a failure shows with a document that differs. */
export function historyOf(id: string, made: Iterable<MadeWrite>): string {
  const writes = [...made].filter((w) => BSON.EJSON.stringify(w.id) === id).sort((a, b) => (lwwBeats(a.version, b.version) ? 1 : -1));
  return writes.map((w) => `  ${w.server} ${w.kind} ${showVersion(w.version)} -> ${showBytes(w.doc)}`).join('\n');
}

export function showRecord(record: ConflictRecord): string {
  return BSON.EJSON.stringify(record);
}

/** The kinds of write a user makes on a shared document. */
export type SharedWriteKind = 'insert' | 'set shared' | 'set own' | 'inc' | 'replace' | 'delete';

export interface SharedWrite {
  kind: SharedWriteKind;
  id: string;
  /** The value set, inserted, added or replaced with. */
  value: unknown;
  /** How long the server waits in its round before writing. */
  delayMs: number;
}

const KINDS: SharedWriteKind[] = ['insert', 'set shared', 'set own', 'inc', 'replace', 'delete'];

/** A seeded sequence of writes on the documents `ids`: the same seed, the same writes in the same order. */
export class SharedWrites {
  private readonly random: () => number;
  private count = 0;

  constructor(
    readonly seed: number,
    private readonly ids: readonly string[],
    private readonly maxDelayMs: number,
  ) {
    this.random = seededRandom(seed);
  }

  next(): SharedWrite {
    const kind = KINDS[Math.floor(this.random() * KINDS.length)]!;
    const id = this.ids[Math.floor(this.random() * this.ids.length)]!;
    const delayMs = Math.floor(this.random() * (this.maxDelayMs + 1));
    const k = ++this.count;
    const value = kind === 'inc' ? new Int32(1 + Math.floor(this.random() * 5)) : this.value(k);
    return { kind, id, value, delayMs };
  }

  /** Numbers of two BSON types and strings, so that a copy that changed a type shows in the bytes. */
  private value(k: number): unknown {
    const roll = this.random();
    if (roll < 0.3) return new Int32(k);
    if (roll < 0.5) return new Double(k + 0.5);
    if (roll < 0.8) return `v${k}`;
    return { k: new Int32(k), list: [`v${k}`, new Double(k)] };
  }
}

/** A user's write as its server made it: its version, and the document it left (without `__mmm`; null: deleted). */
export interface MadeWrite {
  id: string;
  kind: SharedWriteKind;
  server: string;
  version: WriteVersion;
  doc: Buffer | null;
}

/**
 * Makes `write` on `server`'s copy of `collection`, and returns what it made, or undefined when
 * it changed nothing (an insert of a document that exists there already, a write of one that
 * does not). Each write reads the document it leaves (findAndModify) and its oplog time (the
 * session's operationTime is the write's own entry) in the same command, as replication may
 * change the document right after.
 */
export async function makeSharedWrite(client: MongoClient, collection: Collection<Document>, server: string, origin: string, write: SharedWrite): Promise<MadeWrite | undefined> {
  const filter = { _id: write.id as never };
  const after = { returnDocument: 'after', promoteValues: false } as const;
  const session = client.startSession();
  try {
    let doc: Document | null;
    switch (write.kind) {
      case 'insert': {
        const inserted = { _id: write.id, shared: write.value, n: new Int32(0), by: server };
        try {
          await collection.insertOne(inserted as Document, { session });
        } catch (err) {
          // E11000: the document exists on this server (inserted here or replicated from another).
          if (err instanceof MongoServerError && err.code === 11000) return undefined;
          throw err;
        }
        return { id: write.id, kind: write.kind, server, version: { ts: session.operationTime!, origin }, doc: untaggedDoc(inserted) };
      }
      case 'set shared':
        doc = await collection.findOneAndUpdate(filter, { $set: { shared: write.value } }, { ...after, session });
        break;
      case 'set own':
        doc = await collection.findOneAndUpdate(filter, { $set: { [`own_${server}`]: write.value } }, { ...after, session });
        break;
      case 'inc':
        doc = await collection.findOneAndUpdate(filter, { $inc: { n: write.value as Int32 } }, { ...after, session });
        break;
      case 'replace':
        doc = await collection.findOneAndReplace(filter, { replaced: write.value, n: new Int32(0), by: server }, { ...after, session });
        break;
      case 'delete':
        if (!(await collection.findOneAndDelete(filter, { session }))) return undefined;
        return { id: write.id, kind: write.kind, server, version: { ts: session.operationTime!, origin }, doc: null };
    }
    return doc ? { id: write.id, kind: write.kind, server, version: { ts: session.operationTime!, origin }, doc: untaggedDoc(doc) } : undefined;
  } finally {
    await session.endSession();
  }
}
