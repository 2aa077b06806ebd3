// A copy: the documents a source collection holds, written to the destination collection, before
// its link follows the source's oplog (`replicate --copy`).
//
// Exact by construction: every document is read at one snapshot of the source, time `at`
// (./read.ts), and the link then replays the oplog after `at` (config/store.ts endCopy: its
// `since`). A write made during the copy is in the oplog after `at`, so it is applied once, after
// the copy, in order; none is in both. Until the copy ends the link is marked `copying` and no
// run follows it (../replicate/route.ts).
//
// Resumable: the collection is split into `_id` ranges, copied a few at a time; each batch's
// transaction records how far its range got (./write.ts), so running the copy again goes on
// from there at the same snapshot. It stops with a CopyError rather than copy inexactly when
// the source no longer keeps that snapshot (its history window), or when its oplog no longer
// holds `at` (the link could not replay what followed).

import { BSON, type MongoClient, type Timestamp } from 'mongodb';
import { abortAbandonedTransactions } from '../apply/abandoned.ts';
import { serverErrorCode } from '../apply/transient.ts';
import { measureOplog } from '../check/oplog-headroom.ts';
import type { ReplicationConfigStore } from '../config/store.ts';
import { CopyError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { formatTs } from '../oplog/decode.ts';
import { currentSnapshot, rangeBounds, readRange, type ReadRange } from './read.ts';
import { readCopy, removeCopy, saveHeader, type CopyHeader, type CopyKey, type CopyMode, type RangeProgress } from './state.ts';
import { finishRange, writeBatch, type CopyWriteOptions } from './write.ts';

export interface CopyOptions extends CopyWriteOptions {
  /** Ranges copied at once. */
  parallel: number;
  /** Ranges the collection is split into (fewer for a small one). */
  ranges: number;
  /** Documents per read reply, and so per transaction. */
  batchSize: number;
  logger: Logger;
  /** Called after every batch written. */
  onProgress?: (progress: CopyProgress) => void;
  /** Something the user should know before it is too late (a window the copy may outlast). */
  onWarning?: (message: string) => void;
}

export const COPY_DEFAULTS = {
  parallel: 4,
  ranges: 32,
  batchSize: 1000,
  maxTimeMS: 60_000,
} as const satisfies Partial<CopyOptions>;

export interface CopyProgress {
  copied: number;
  bytes: number;
  /** The source's count and size when the copy began (the server's estimate). */
  total: number;
  totalBytes: number;
  /** Since this process began (or resumed) the copy. */
  elapsedMs: number;
  /** Documents and bytes this process copied, for its rate. */
  copiedHere: number;
  bytesHere: number;
}

export interface CopyResult extends CopyProgress {
  at: Timestamp;
  /** Documents the destination held and kept (mode `keep`, or written there during the copy). */
  kept: number;
  /** Documents copied as decoded, not byte for byte (./read.ts). */
  inexact: number;
  resumed: boolean;
}

export interface CopyTarget {
  key: CopyKey;
  source: { name: string; client: MongoClient };
  destination: { name: string; client: MongoClient };
  /** The destination's link store: the copy ends by letting the link follow the oplog. */
  store: ReplicationConfigStore;
  /** For a new copy; a resumed one goes on in the mode it began in. */
  mode: CopyMode;
}

/** How fast a copy is assumed to go before it has measured itself, for the first estimate (README). */
const ASSUMED_BYTES_PER_SECOND = 20 * 1024 * 1024;
/** How often the copy checks the source's oplog still holds its start. */
const OPLOG_CHECK_MS = 5_000;
/** SnapshotTooOld: the source no longer keeps the history of the copy's snapshot. */
const SNAPSHOT_TOO_OLD = 239;
/** Of the documents that could not be copied byte for byte, the `_id`s named in the warning. */
const INEXACT_SHOWN = 5;

/** The copy's header and ranges: those of a copy begun before, or of a new one (saved). */
async function begin(target: CopyTarget, options: CopyOptions): Promise<{ header: CopyHeader; done: RangeProgress[]; resumed: boolean }> {
  const { key, source, destination } = target;
  const existing = await readCopy(destination.client, key);
  if (existing) {
    // A copying process that died left its transactions open, locking its ranges' progress
    // for up to a minute: they never commit, and this copy writes their documents again.
    const aborted = await abortAbandonedTransactions(destination.client).catch(() => 0);
    if (aborted > 0) options.logger.info({ aborted }, 'aborted the transactions a stopped copy left open');
    return { header: existing.header, done: existing.ranges, resumed: true };
  }
  const at = await currentSnapshot(source.client, key.src);
  const { total, totalBytes } = await collectionSize(source.client, key.src);
  const bounds = await rangeBounds(source.client, key.src, options.ranges, total);
  const header: CopyHeader = { at, mode: target.mode, total, totalBytes, started: new Date(), bounds };
  await saveHeader(destination.client, key, header);
  return { header, done: [], resumed: false };
}

async function collectionSize(client: MongoClient, ns: string): Promise<{ total: number; totalBytes: number }> {
  const dot = ns.indexOf('.');
  const collection = client.db(ns.slice(0, dot)).collection(ns.slice(dot + 1));
  const [stats] = await collection
    .aggregate<{ storageStats?: { count?: number; size?: number } }>([{ $collStats: { storageStats: {} } }])
    .toArray()
    .catch(() => [] as Array<{ storageStats?: { count?: number; size?: number } }>);
  if (stats?.storageStats) return { total: Number(stats.storageStats.count ?? 0), totalBytes: Number(stats.storageStats.size ?? 0) };
  // Without the privilege for $collStats: the count from the collection's metadata, which
  // `count` needs no more than find does; the size stays unknown (no window estimate then).
  return { total: await collection.estimatedDocumentCount(), totalBytes: 0 };
}

/** Copies (or goes on copying) `target`, then lets its link follow the oplog. */
export async function copyCollection(target: CopyTarget, options: CopyOptions): Promise<CopyResult> {
  const { key, source, destination } = target;
  const { header, done: progress, resumed } = await begin(target, options);
  const { at, mode } = header;
  const ranges = splitRanges(header.bounds, progress);
  let copied = progress.reduce((n, r) => n + r.copied, 0);
  let bytes = progress.reduce((n, r) => n + r.bytes, 0);
  let kept = 0;
  /** Documents copied as decoded, which the driver cannot write back byte for byte; the first few `_id`s. */
  let inexact = 0;
  const inexactIds: unknown[] = [];
  let copiedHere = 0;
  let bytesHere = 0;
  const started = Date.now();
  const snapshot = (): CopyProgress => ({ copied, bytes, total: header.total, totalBytes: header.totalBytes, elapsedMs: Date.now() - started, copiedHere, bytesHere });
  options.logger.info({ src: key.src, dst: key.dst, at: formatTs(at), ranges: ranges.length, resumed }, resumed ? 'resuming a copy' : 'copying');

  const window = new WindowWatch(source, at, options);
  await window.check(header.totalBytes - bytes);
  const failed = new AbortController();
  const pending = ranges.filter((r) => !r.done);
  const worker = async (lane: number) => {
    for (let next = pending.shift(); next !== undefined && !failed.signal.aborted; next = pending.shift()) {
      for await (const batch of readRange(source.client, key.src, at, next.read, { batchSize: options.batchSize })) {
        if (failed.signal.aborted) return;
        const outcome = await writeBatch(destination.client, { key, range: next.range, at, ...batch }, mode, lane, options);
        copied += batch.documents.length;
        copiedHere += batch.documents.length;
        bytes += batch.bytes;
        bytesHere += batch.bytes;
        kept += outcome.kept;
        inexact += batch.inexact.length;
        inexactIds.push(...batch.inexact.slice(0, INEXACT_SHOWN - inexactIds.length));
        options.onProgress?.(snapshot());
        await window.watch(snapshot());
      }
      await finishRange(destination.client, key, next.range, options);
    }
  };
  try {
    await Promise.all(
      Array.from({ length: Math.min(options.parallel, pending.length) }, (_, lane) =>
        worker(lane).catch((err: unknown) => {
          failed.abort();
          throw err;
        }),
      ),
    );
  } catch (err) {
    throw explainReadFailure(err, source.name, at);
  }
  await window.check(0);
  if (!(await target.store.endCopy(key.source, key.src, key.dst, at))) {
    throw new CopyError(`the link from ${source.name}/${key.src} to ${destination.name}/${key.dst} was removed or changed during the copy: the copied documents stay, unlinked`);
  }
  await removeCopy(destination.client, key);
  if (kept > 0) options.logger.warn({ kept, dst: key.dst }, 'documents the destination held were kept');
  if (inexact > 0) {
    const ids = inexactIds.map((id) => BSON.EJSON.stringify(id)).join(', ');
    options.onWarning?.(
      `${inexact} documents of ${key.src} hold a value the driver writes back as another type (an \`undefined\`, written as null); copied so, first _ids: ${ids} (mmm verify lists them all)`,
    );
  }
  return { ...snapshot(), at, kept, inexact, resumed };
}

interface PlannedRange extends RangeProgress {
  read: ReadRange;
}

/** The ranges `bounds` make, each with the progress recorded for it. */
function splitRanges(bounds: readonly unknown[], progress: readonly RangeProgress[]): PlannedRange[] {
  const byRange = new Map(progress.map((p) => [p.range, p]));
  return Array.from({ length: bounds.length + 1 }, (_, range) => {
    const recorded = byRange.get(range);
    const read: ReadRange = {
      ...(range > 0 && { min: bounds[range - 1] }),
      ...(range < bounds.length && { max: bounds[range] }),
      ...(recorded?.last !== undefined && { after: recorded.last }),
    };
    return { range, done: recorded?.done ?? false, copied: recorded?.copied ?? 0, bytes: recorded?.bytes ?? 0, read };
  });
}

function explainReadFailure(err: unknown, source: string, at: Timestamp): unknown {
  if (serverErrorCode(err) !== SNAPSHOT_TOO_OLD) return err;
  return new CopyError(
    `${source} no longer keeps the copy's snapshot (${formatTs(at)}): the copy outlasted its history window ` +
      `(minSnapshotHistoryWindowInSeconds). What was copied stays; remove the link (mmm unreplicate) and copy again ` +
      `with --copy-mode replace, after raising that parameter on ${source} if the copy takes longer than it`,
    { cause: err },
  );
}

/**
 * Whether the source still holds what the copy needs: the oplog from `at` on (the link replays
 * it), and, by estimate, the snapshot history. Warns once when the copy is likely to outlast
 * either; throws a CopyError once the oplog has lost `at`.
 */
class WindowWatch {
  private lastCheck = Date.now();
  private warned = false;

  constructor(
    private readonly source: { name: string; client: MongoClient },
    private readonly at: Timestamp,
    private readonly options: CopyOptions,
  ) {}

  async watch(progress: CopyProgress): Promise<void> {
    if (Date.now() - this.lastCheck < OPLOG_CHECK_MS) return;
    this.lastCheck = Date.now();
    // After a few seconds the copy knows its own rate: the estimate is made again with it.
    const rate = progress.bytesHere / Math.max(1, progress.elapsedMs / 1000);
    await this.check(progress.totalBytes - progress.bytes, rate > 0 ? rate : undefined);
  }

  async check(remainingBytes: number, bytesPerSecond = ASSUMED_BYTES_PER_SECOND): Promise<void> {
    const oplog = await measureOplog(this.source.client);
    if (oplog.oldest.greaterThan(this.at)) {
      throw new CopyError(
        `the oplog of ${this.source.name} no longer holds the copy's start (${formatTs(this.at)}; its oldest entry is ${formatTs(oplog.oldest)}): ` +
          `the writes made since could not be replayed. Remove the link (mmm unreplicate) and copy again, with a larger oplog`,
      );
    }
    if (this.warned || remainingBytes <= 0) return;
    const seconds = remainingBytes / bytesPerSecond;
    const elapsed = Math.max(0, oplog.newest.t - this.at.t);
    const problems: string[] = [];
    if (oplog.fullWindowSeconds !== null && !oplog.young && elapsed + seconds > oplog.fullWindowSeconds) {
      problems.push(`its oplog holds about ${Math.round(oplog.fullWindowSeconds)} s of writes at the current rate`);
    }
    const history = await snapshotHistorySeconds(this.source.client);
    if (history !== undefined && elapsed + seconds > history) problems.push(`it keeps ${history} s of snapshot history (minSnapshotHistoryWindowInSeconds)`);
    if (problems.length === 0) return;
    this.warned = true;
    this.options.onWarning?.(
      `the copy may take about ${Math.round(elapsed + seconds)} s from its start, and ${this.source.name} may not hold it that long: ${problems.join('; ')}`,
    );
  }
}

async function snapshotHistorySeconds(client: MongoClient): Promise<number | undefined> {
  const reply = await client
    .db('admin')
    .command({ getParameter: 1, minSnapshotHistoryWindowInSeconds: 1 })
    .catch(() => undefined);
  const value = reply?.minSnapshotHistoryWindowInSeconds as unknown;
  return typeof value === 'number' ? value : undefined;
}
