// Conflicts: deciding, inside the transaction that applies a partition's writes, which of them
// meet the document they were made on, and what to do with those that do not.
//
// Each write checked carries its version and its base: the source's document just before the
// write (its pre-image, ./preimages.ts; none for an insert). The destination's document is read
// in the transaction, so what is decided on is what the transaction overwrites: a user's write
// that comes between is a write conflict, and the server runs the transaction again.
//   - The document is the base (compared as BSON, `__mmm` aside), and the destination's own
//     pre-images show no user's write on it, nor a delete, from the write's time on: the write
//     was made on what the destination holds, and replays exactly, as it would without any
//     check. (The bytes alone would take a document changed and changed back, or inserted and
//     deleted, for one never touched; README, "Conflicts".)
//   - It is not, and the document's tag says it already holds this write or a later one of
//     the same origin (a restart replaying): the write is not applied, and nothing is looked up.
//   - Otherwise the destination has a version the write's origin had not seen when it wrote.
//     Its version is looked up (./last-write.ts) and the policy (./version.ts) decides. A winning write is applied whole,
//     as the document its source holds after it (the base with the write applied, never the
//     write on a document it was not made on, which would be a mix that no server holds); a
//     losing one is not applied. The source, in turn, meets the winning version from the
//     destination, and decides the same way: both end on the winner.
//   - Where the version that loses is the destination's, the conflict is kept in its
//     `mmm.conflicts`, in the same transaction (./record.ts). A version from the write's own
//     origin (the destination already holds a later one, as when a restart replays) is no conflict.
//
// A write whose source did not keep its pre-image (made before `run` turned them on) is applied
// unchecked, as before, and counted: conflict detection starts with the writes after.

import { BSON, Decimal128, Double, Int32, Long, ObjectId, Timestamp, type ClientSession, type Document, type MongoClient } from 'mongodb';
import type { DestinationWrite } from '../apply/writer.ts';
import type { Logger } from '../log.ts';
import { translateUpdate, rebuildDocument } from '../apply/update.ts';
import { decodeValue, equalWithout, EXACT_DECODE, keyElements, type ElementSpan } from '../bson/raw.ts';
import { deleteKey } from '../replicate/marker-deletes.ts';
import { TAG_FIELD } from '../replicate/tag.ts';
import { lastVersion, madeByMmm } from './last-write.ts';
import { DestinationHistory } from './history.ts';
import type { EarlierState } from './preimages.ts';
import { conflictRecord, type ConflictRecord } from './record.ts';
import { readTombstones, type Guard, type Tombstone } from './tombstones.ts';
import { beats, parseTag, sameVersion, type ConflictPolicy, type Version } from './version.ts';

/** What a write is checked against, planned when it is read. */
export interface ConflictCheck {
  /** The write's version, as its tag names it. */
  version: Version;
  /** The source's document before the write, as BSON; null: there was none (an insert); undefined: the source kept none. */
  base: Uint8Array | null | undefined;
}

export interface Resolution {
  /** The writes to apply, in order. */
  writes: DestinationWrite[];
  /** For each of them, its index among the writes given. */
  from: number[];
  /** The conflicts to keep in `mmm.conflicts`. */
  records: ConflictRecord[];
  /** Writes applied unchecked because their source kept no pre-image. */
  unchecked: number;
  /** Writes not applied: the destination's version won over them. */
  rejected: number;
  /** Oplog scans that gave up (./last-write.ts): those versions were taken for older than the oplog. */
  slowScans: number;
  /** Writes whose document's history on the destination could not be read in time (writtenSince): checked by content alone. */
  unreadHistory: number;
  /** Deletes that met no document, to keep in `mmm.tombstones` (./tombstones.ts). */
  tombstones: Tombstone[];
  /** Documents written where none was, whose tombstone key the transaction also writes, so that a delete kept concurrently conflicts with it (./tombstones.ts). */
  guards: Guard[];
}

export interface ResolverOptions {
  destinationId: string;
  sourceId: string;
  policy: ConflictPolicy;
  /** The destination namespaces replicated into from more than one server: their deletes that meet no document are kept (./tombstones.ts). */
  manySources?: ReadonlySet<string>;
}

/** The document's state as the walk through the writes knows it. */
type State =
  /**
   * `touched`: the destination changed it itself, or deleted it, since the write meeting it was
   * made (usersWrote). `tombstone`: none is there, and a delete of it that met none is kept (./tombstones.ts).
   */
  | { kind: 'read'; doc: Buffer | null; version?: Version; touched?: true; tombstone?: Version }
  /** Made by an applied write: the next write of the source's stream was made on it. */
  | { kind: 'written' }
  /** Unknown: a write went in unchecked. */
  | { kind: 'unknown' };

export class ConflictResolver {
  /** Writes applied unchecked are said once per run: a catch-up of writes made before pre-images were on has many. */
  private warnedUnchecked = false;
  /** Until when (Date.now) the destination's pre-images are not read: a read ran out of time, and each batch would wait as long again. */
  private historyUnreadUntil = 0;
  /** When that was last said (at most once per HISTORY_RETRY_MS). */
  private historyWarnedAt = Number.NEGATIVE_INFINITY;
  /** The destination's own writes, by namespace, read once each (./history.ts). */
  private readonly histories = new Map<string, DestinationHistory>();

  constructor(private readonly options: ResolverOptions) {}

  async resolve(client: MongoClient, session: ClientSession, writes: readonly DestinationWrite[], maxTimeMS: number): Promise<Resolution> {
    const out: Resolution = { writes: [], from: [], records: [], unchecked: 0, rejected: 0, slowScans: 0, unreadHistory: 0, tombstones: [], guards: [] };
    const states = await this.read(client, session, writes, maxTimeMS, (n) => (out.unreadHistory += n));
    for (const [index, w] of writes.entries()) {
      const keep = (write: DestinationWrite) => {
        out.writes.push(write);
        out.from.push(index);
      };
      const check = w.check;
      if (check === undefined) {
        // A link that does not resolve, into the same collection: what it writes is not known.
        keep(w);
        if (states.size > 0) states.set(documentKey(w.ns, w.id), { kind: 'unknown' });
        continue;
      }
      const key = documentKey(w.ns, w.id);
      const state = states.get(key) ?? { kind: 'unknown' };
      if (check.base === undefined || state.kind === 'unknown') {
        if (check.base === undefined) out.unchecked++;
        states.set(key, { kind: 'unknown' });
        keep(w);
        continue;
      }
      if (state.kind === 'written' || (untouched(state, w) && matches(state.doc, check.base, w))) {
        keep(w);
        if (state.kind === 'read' && state.doc === null) {
          if (w.kind === 'delete') {
            this.keepTombstone(out, w, check.version, state.tombstone);
            // Gone on both; but a version of the destination's that the source had not seen (one
            // a write before lost to, a write of its own since, a delete kept) still stands
            // against the source's next write, as it would in a batch of its own.
            if (state.version || state.touched || state.tombstone) {
              states.set(key, state.tombstone ? { ...state, tombstone: later(state.tombstone, check.version) } : state);
              continue;
            }
          } else this.guard(out, w);
        }
        states.set(key, { kind: 'written' });
        continue;
      }
      const tag = parseTag(tagOf(state.doc));
      if (state.version === undefined && tag?.origin === check.version.origin && !beats(check.version, tag, this.options.policy)) {
        // This write or a later one of its origin made the document (a replay): any user's
        // write since came later still. Its tag is enough; no oplog to read.
        continue;
      }
      const current = state.doc === null ? null : decodeWithoutTag(state.doc);
      // A kept delete is the last version, unless the destination wrote the document since (its oplog says which is later).
      const inOplog = () => lastVersion(client, this.options.destinationId, w.ns, w.id, tagOf(state.doc), () => out.slowScans++);
      const theirs = state.version ?? (state.tombstone && !state.touched ? state.tombstone : later(state.tombstone, await inOplog()));
      if (sameVersion(theirs, check.version) || !beats(check.version, theirs, this.options.policy)) {
        // Already applied (a replay), or the destination's version wins: the write is not
        // applied. Lost only to another origin's (a later write of its own is a replay too).
        if (theirs.origin !== check.version.origin) out.rejected++;
        states.set(key, { kind: 'read', doc: state.doc, version: theirs });
        continue;
      }
      const winner = postImage(w, check);
      keep(winner.write);
      if (state.doc === null && w.kind !== 'delete') this.guard(out, w);
      states.set(key, { kind: 'written' });
      // A document the destination never had (none in its oplog either) is no version lost.
      const lostNothing = current === null && theirs.ts === null;
      if (theirs.origin !== check.version.origin && !lostNothing) {
        out.records.push(
          conflictRecord({
            ns: w.ns,
            id: w.id,
            sourceId: this.options.sourceId,
            policy: this.options.policy,
            lost: { version: theirs, doc: current },
            won: { version: check.version, doc: winner.document },
          }),
        );
      }
    }
    return out;
  }

  /** A delete that met no document, where its namespace has several sources: kept, unless a later one is kept already. */
  private keepTombstone(out: Resolution, w: DestinationWrite, version: Version, kept: Version | undefined): void {
    if (!this.options.manySources?.has(w.ns)) return;
    if (kept && !beats(version, kept, LAST_WRITER)) return;
    out.tombstones.push({ ns: w.ns, id: w.id, tag: w.tag });
  }

  /** A document written where none was, where its namespace has several sources: its tombstone key is written too. */
  private guard(out: Resolution, w: DestinationWrite): void {
    if (this.options.manySources?.has(w.ns)) out.guards.push({ ns: w.ns, id: w.id });
  }

  /** Says, once the transaction has committed, what it decided that a reader of the log should know. */
  committed(resolution: Resolution, logger: Logger): void {
    for (const r of resolution.records) {
      logger.warn({ ns: r.ns, _id: r.id, lost: r.lost.origin, won: r.won.origin }, "conflict: a concurrent write won over this destination's version, which is kept in mmm.conflicts");
    }
    if (resolution.rejected > 0) {
      logger.info({ writes: resolution.rejected }, "writes not applied: a concurrent version of the destination's won over them (its origin keeps the conflict)");
    }
    if (resolution.unreadHistory > 0 && Date.now() - this.historyWarnedAt >= HISTORY_RETRY_MS) {
      this.historyWarnedAt = Date.now();
      logger.warn(
        { writes: resolution.unreadHistory },
        `the destination's own writes since these writes could not be read in time (a long backlog): checked by their bytes alone, for the next ${HISTORY_RETRY_MS / 1000} s (said at most that often)`,
      );
    }
    if (resolution.slowScans > 0) {
      logger.warn({ writes: resolution.slowScans }, "a document's last write could not be found in the destination's oplog in time: taken for older than the oplog");
    }
    if (resolution.unchecked > 0 && !this.warnedUnchecked) {
      this.warnedUnchecked = true;
      logger.warn({ writes: resolution.unchecked }, 'writes applied without a conflict check: their source kept no pre-image (made before run turned pre-images on, or already removed); said once per run');
    }
  }

  /** The destination's documents that the first checked write of each meets, read in the transaction. */
  private async read(
    client: MongoClient,
    session: ClientSession,
    writes: readonly DestinationWrite[],
    maxTimeMS: number,
    onUnread: (writes: number) => void,
  ): Promise<Map<string, State>> {
    const states = new Map<string, State>();
    const wanted = new Map<string, unknown[]>();
    const firsts = new Map<string, DestinationWrite>();
    for (const w of writes) {
      if (w.check?.base === undefined) continue;
      const key = documentKey(w.ns, w.id);
      if (states.has(key)) continue;
      states.set(key, { kind: 'read', doc: null });
      firsts.set(key, w);
      let ids = wanted.get(w.ns);
      if (!ids) wanted.set(w.ns, (ids = []));
      ids.push(w.id);
    }
    // Before the documents: the kept history's own read needs no order with theirs.
    const asked = this.askHistory(client, firsts);
    for (const [ns, ids] of wanted) {
      const dot = ns.indexOf('.');
      const cursor = client
        .db(ns.slice(0, dot))
        .collection(ns.slice(dot + 1))
        .find({ _id: { $in: ids } } as Document, { session, raw: true, maxTimeMS, batchSize: ids.length });
      for await (const raw of cursor) {
        const doc = raw as unknown as Buffer;
        const id = keyElements(doc).id;
        if (id) states.set(storedKey(ns, doc, id), { kind: 'read', doc });
      }
      if (this.options.manySources?.has(ns)) await this.readTombstones(client, session, ns, firsts, states, maxTimeMS);
    }
    // Asked once per time: one transaction of mmm's writes many documents.
    const mmms = new Map<string, Promise<boolean>>();
    const byMmm = (ts: Timestamp) => {
      const key = ts.toString();
      let answer = mmms.get(key);
      if (!answer) mmms.set(key, (answer = madeByMmm(client, ts)));
      return answer;
    };
    // After the documents, whose read fixed the transaction's snapshot: every write of the
    // destination's before it is among the pre-images read now.
    for (const [key, writes] of await this.writtenSince(client, firsts, asked, onUnread)) {
      const state = states.get(key);
      if (state?.kind === 'read' && (await usersWrote(writes, state.doc, byMmm))) states.set(key, { ...state, touched: true });
    }
    return states;
  }

  /** For the documents of `ns` none is there for: the deletes kept of them (./tombstones.ts), which a write decides against, and a delete keeps if it is later. */
  private async readTombstones(
    client: MongoClient,
    session: ClientSession,
    ns: string,
    firsts: Map<string, DestinationWrite>,
    states: Map<string, State>,
    maxTimeMS: number,
  ): Promise<void> {
    const ids: unknown[] = [];
    for (const [key, w] of firsts) {
      const state = states.get(key);
      if (w.ns === ns && state?.kind === 'read' && state.doc === null) ids.push(w.id);
    }
    if (ids.length === 0) return;
    for (const { id, tag } of await readTombstones(client, session, ns, ids, maxTimeMS)) {
      const key = documentKey(ns, id);
      const state = states.get(key);
      const version = parseTag(tag);
      if (state?.kind === 'read' && version) states.set(key, { ...state, tombstone: version });
    }
  }

  /**
   * What the batch asks of the destination's history (writtenSince): for each namespace, its
   * documents and the earliest write's time, with the kept pre-images' refresh started.
   * Undefined: none is read (a read ran out of time lately).
   */
  private askHistory(client: MongoClient, firsts: Map<string, DestinationWrite>): Map<string, HistoryQuestion> | undefined {
    if (Date.now() < this.historyUnreadUntil) return undefined;
    const byNs = new Map<string, HistoryQuestion>();
    for (const [key, w] of firsts) {
      const rival = this.rivalsOf(w);
      if (rival === undefined) continue;
      const asked = byNs.get(w.ns);
      if (!asked) byNs.set(w.ns, { ids: [w.id], since: rival.from, rivals: new Map([[key, rival]]), refreshed: Promise.resolve(true) });
      else {
        asked.ids.push(w.id);
        asked.rivals.set(key, rival);
        if (rival.from.lessThan(asked.since)) asked.since = rival.from;
      }
    }
    for (const [ns, asked] of byNs) {
      let history = this.histories.get(ns);
      if (!history) this.histories.set(ns, (history = new DestinationHistory(ns, (id) => documentKey(ns, id))));
      asked.refreshed = history.refresh(client, asked.since, HISTORY_MS);
      // Awaited in writtenSince; a failure meanwhile is not left unhandled.
      asked.refreshed.catch(() => undefined);
    }
    return byNs;
  }

  /**
   * Which of the destination's own writes can win over `w`; undefined: `w`'s time is unknown.
   *   - `from`: from `w`'s time on, since under `lww` only a later write wins. Where this
   *     destination is the preferred server, its writes win whatever their time: also those
   *     the source had not seen, after `had`, as far back as PREFERRED_LOOKBACK_SECONDS.
   *   - `had`: the time of the destination's version that `w`'s base holds, if its tag names
   *     one. The source had the destination's writes on the document up to that one, and none
   *     after (it would hold a later one), whatever their times (without the carried time, a
   *     second's counters say nothing of order across servers: a write made after receiving one
   *     can bear an earlier time than it).
   */
  private rivalsOf(w: DestinationWrite): Rivals | undefined {
    const own = w.check!.version.ts;
    if (own === null) return undefined;
    const { policy, destinationId } = this.options;
    const base = w.check!.base ? parseTag(tagOf(w.check!.base)) : undefined;
    const had = base?.origin === destinationId && base.ts ? base.ts : undefined;
    if (!had || !had.lessThan(own) || policy.kind !== 'prefer' || policy.server !== destinationId) return { from: own, had };
    const back = new Timestamp({ t: Math.max(0, own.t - PREFERRED_LOOKBACK_SECONDS), i: 0 });
    return { from: had.greaterThan(back) ? had : back, had };
  }

  /**
   * A write that meets the very document it was made on matches by content; but the history
   * may differ: the destination may have changed the document and changed it back, or
   * inserted and deleted it, while the write was made elsewhere (README, "Conflicts"). Only a
   * write of the destination's that can win over it is looked for (rivalsOf), in the
   * pre-images the destination kept: for each key of `firsts`, those writes on its document,
   * in order.
   */
  private async writtenSince(
    client: MongoClient,
    firsts: Map<string, DestinationWrite>,
    asked: Map<string, HistoryQuestion> | undefined,
    onUnread: (writes: number) => void,
  ): Promise<Map<string, EarlierState[]>> {
    if (!asked) {
      onUnread(firsts.size);
      return new Map();
    }
    const found = new Map<string, EarlierState[]>();
    for (const [ns, { ids, since, rivals, refreshed }] of asked) {
      const states = await this.histories.get(ns)!.writtenSince(client, ids, since, HISTORY_MS, refreshed);
      if (states === undefined) {
        this.historyUnreadUntil = Date.now() + HISTORY_RETRY_MS;
        onUnread(ids.length);
        continue;
      }
      for (const state of states) {
        const key = documentKey(ns, state.id);
        // Read from the earliest of the namespace on: one before this document's rivals is none.
        const rival = rivals.get(key);
        if (!rival || state.ts.lessThan(rival.from) || (rival.had && !state.ts.greaterThan(rival.had))) continue;
        const list = found.get(key);
        if (list) list.push(state);
        else found.set(key, [state]);
      }
    }
    return found;
  }
}

/** Which of the destination's writes on a document can win over the write meeting it (ConflictResolver.rivalsOf). */
interface Rivals {
  /** Those from this time on... */
  from: Timestamp;
  /** ...and after this one, if the source had the destination's writes up to it. */
  had: Timestamp | undefined;
}

/** A namespace's part of what a batch asks of the destination's history. */
interface HistoryQuestion {
  ids: unknown[];
  /** The earliest `from` of their rivals. */
  since: Timestamp;
  /** By document key. */
  rivals: Map<string, Rivals>;
  /** The refresh of the kept pre-images this batch waits on (DestinationHistory.refresh). */
  refreshed: Promise<boolean>;
}

/**
 * The longest each of a batch's reads of the destination's pre-images may take (they run while
 * the transaction is open; ./history.ts). Steady replication reads a batch's worth; a catch-up
 * after a long outage may have far more, whose documents are then checked by content alone
 * for a while, and said so.
 */
const HISTORY_MS = 2_000;
/**
 * How far before a write the preferred destination's writes its source had not seen are looked
 * for (rivalsOf): what the kept history holds anyway (./history.ts keeps a few seconds before
 * the earliest write asked about). Writes older still reached the source before its write,
 * unless replication that way was that far behind.
 */
const PREFERRED_LOOKBACK_SECONDS = 5;
/** After a read that ran out of time, how long the next batches go without one (they would each wait HISTORY_MS). */
const HISTORY_RETRY_MS = 30_000;

/**
 * One key per document as the server tells them apart: numbers by value whatever their type (1
 * and 1.0 are one `_id` to it), strings and ObjectIds spelled out, anything else as canonical
 * Extended JSON.
 */
function documentKey(ns: string, id: unknown): string {
  if (typeof id === 'string') return `${ns}\u0000s${id}`;
  if (id instanceof Int32 || id instanceof Double) return `${ns}\u0000n${id.value}`;
  if (id instanceof Long || id instanceof Decimal128) return `${ns}\u0000n${Number(id.toString())}`;
  if (id instanceof ObjectId) return `${ns}\u0000o${id.toHexString()}`;
  return `${ns}\u0000${deleteKey(id)}`;
}

/** documentKey of the `_id` element `span` of a document read raw, decoded only when it is not a string, an int32 or an ObjectId. */
function storedKey(ns: string, doc: Buffer, span: ElementSpan): string {
  const at = span.valueStart;
  // A string's value: its length with the final 0, then its bytes and that 0.
  if (span.type === 0x02) return `${ns}\u0000s${doc.toString('utf8', at + 4, span.end - 1)}`;
  if (span.type === 0x10) return `${ns}\u0000n${doc.readInt32LE(at)}`;
  if (span.type === 0x07) return `${ns}\u0000o${doc.toString('hex', at, at + 12)}`;
  return documentKey(ns, decodeValue(doc, span));
}

/**
 * Whether a user made one of the writes on a document whose pre-images are `earlier` (in order;
 * the last write left `doc`, null: none). Each write of mmm's gives the document a new tag, a
 * user's leaves the one it had (or none, a replacement); but a transaction of mmm's that writes
 * a document twice gives both writes one tag (../oplog/decode.ts), so a write in the same
 * transaction as one of mmm's (the same time) is mmm's too. One that still looks like a user's
 * is looked up in the oplog (`byMmm`): a transaction spanning several entries gives its writes
 * several times. A document gone now was deleted since, by whoever: the delete is looked up.
 */
async function usersWrote(earlier: readonly EarlierState[], doc: Buffer | null, byMmm: (ts: Timestamp) => Promise<boolean>): Promise<boolean> {
  if (doc === null) return true;
  let mmms = false;
  for (const [k, write] of earlier.entries()) {
    const after = k + 1 < earlier.length ? earlier[k + 1]!.tag : tagOf(doc);
    const sameTransaction = k > 0 && earlier[k - 1]!.ts.equals(write.ts);
    mmms = (after !== undefined && after !== write.tag) || (sameTransaction && mmms) || (await byMmm(write.ts));
    if (!mmms) return true;
  }
  return false;
}

/**
 * Whether the destination made no write of its own on the document since `w` was made, keeps
 * no delete of it, and holds no version a write of the source's lost to (a delete meeting none
 * ends as its source does, whoever deleted it here).
 */
function untouched(state: State & { kind: 'read' }, w: DestinationWrite): boolean {
  return (!state.touched && !state.tombstone && !state.version) || (w.kind === 'delete' && state.doc === null);
}

/** Versions are ordered by time, then server id: the later of a kept delete (if any) and the oplog's version. */
const LAST_WRITER: ConflictPolicy = { kind: 'lww' };

function later(kept: Version | undefined, logged: Version): Version {
  return kept && beats(kept, logged, LAST_WRITER) ? kept : logged;
}

/** Whether the write was made on the document the destination holds (`doc`, null: none). */
function matches(doc: Buffer | null, base: Uint8Array | null, w: DestinationWrite): boolean {
  // A delete of a document already gone ends where its source ends.
  if (doc === null) return base === null || w.kind === 'delete';
  if (base === null) return false;
  return equalWithout(doc, keyElements(doc).tag, base, keyElements(base).tag);
}

function decodeWithoutTag(bytes: Uint8Array): Document {
  const doc = BSON.deserialize(bytes, EXACT_DECODE);
  delete doc[TAG_FIELD];
  return doc;
}

function tagOf(bytes: Uint8Array | null): unknown {
  const span = bytes && keyElements(bytes).tag;
  return span ? decodeValue(bytes, span) : undefined;
}

/**
 * A winning write as the document its source holds after it: the insert's or replacement's
 * document, or the base with the diff applied; a delete stays a delete.
 */
function postImage(w: DestinationWrite, check: ConflictCheck): { write: DestinationWrite; document: Document | null } {
  if (w.kind === 'delete') return { write: w, document: null };
  const o = w.change.o;
  let document: Document;
  if (Object.hasOwn(o, '_id')) document = o;
  else {
    if (!check.base) throw new Error('an update without a base has no post-image');
    document = rebuildDocument(BSON.deserialize(check.base, EXACT_DECODE), { diff: o.diff as Document }, w.tag);
  }
  const write: DestinationWrite = { ...w, kind: 'update', spec: translateUpdate(document, w.tag), upsert: true };
  const shown = { ...document };
  delete shown[TAG_FIELD];
  return { write, document: shown };
}

