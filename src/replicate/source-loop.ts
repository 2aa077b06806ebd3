// One replication loop: a source server's oplog, read from the destination's checkpoint, applied
// to the destination, checkpoint recorded after. The stages (read, decode, route, apply,
// checkpoint) are separate modules; this file only strings them together and handles failure.
//
// The checkpoint is written only after every write before it is applied (with the destination's
// write concern), so after a crash the loop replays from the checkpoint, and the replayed writes
// converge because each is idempotent (../apply/writer.ts).

import type { MongoClient, Timestamp } from 'mongodb';
import { MongoServerError } from 'mongodb';
import { applyInParallel, type ParallelApplyOptions } from '../apply/parallel.ts';
import { CarriedClock } from '../apply/carried-clock.ts';
import { emptyStats, planWrite, prepareDestination, type ApplyOptions, type ApplyStats, type DestinationWrite } from '../apply/writer.ts';
import { RefusedWrites } from '../apply/refused.ts';
import { abortAbandonedTransactions } from '../apply/abandoned.ts';
import { isTransient, serverErrorCode } from '../apply/transient.ts';
import { describeUnauthorized } from '../check/privileges.ts';
import { metadataNamespace, type Link, type ReplicationConfigStore } from '../config/store.ts';
import { OplogRolledOverError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { formatTs, OplogDecoder, type DecodedBatch } from '../oplog/decode.ts';
import { oplogFilter } from '../oplog/filter.ts';
import { OplogTailerSkipping } from '../oplog/skip-namespace.ts';
import { OplogTailer } from '../oplog/tailer.ts';
import type { ServerSpec } from '../topology.ts';
import { linkWarnings, type LinkWarning } from './commands.ts';
import { BatchBounds, type Bounds } from './batch-bounds.ts';
import { ReadAheadQueue } from './read-ahead.ts';
import { Router, type RoutedChange } from './route.ts';
import { keepPreImages, preImageId, readPreImages } from '../conflict/preimages.ts';
import { prepareConflicts } from '../conflict/record.ts';
import { prepareTombstones } from '../conflict/tombstones.ts';
import { ConflictResolver } from '../conflict/resolve.ts';
import { parseTag } from '../conflict/version.ts';
import { sleep } from './sleep.ts';
import type { ReplicationSettings } from './settings.ts';

/** MongoDB's CappedPositionLost: the cursor's place in the oplog was overwritten. */
const CAPPED_POSITION_LOST = 136;

export interface SourceLoopOptions {
  source: ServerSpec;
  destination: ServerSpec;
  sourceClient: MongoClient;
  destinationClient: MongoClient;
  /** The destination's replication metadata (links and checkpoints). */
  store: ReplicationConfigStore;
  /** Every link of the destination, by source server UUID. */
  linksBySource: ReadonlyMap<string, readonly Link[]>;
  settings: ReplicationSettings;
  logger: Logger;
  observer?: LoopObserver;
  /** Whether a link's writes are checked for conflicts (../conflict/scope.ts); none by default. */
  resolves?: (link: Link) => boolean;
}

export type LoopOutcome = { state: 'stopped' } | { state: 'failed'; error: Error };

/** What a loop is doing: following its source, waiting to retry, or ended. */
export type LoopState = 'running' | 'retrying' | 'stopped' | 'failed';

export interface BatchReport {
  /** Oplog entries read in the batch, replicated or not. */
  entries: number;
  /** What the batch wrote on the destination. */
  stats: ApplyStats;
  /** The checkpoint recorded after the batch. */
  checkpoint: Timestamp;
  /** Wall-clock time of the batch's last entry, when the source logged one. */
  lastWall?: Date;
}

/**
 * Hooks for whoever watches a loop (status recording, metrics). Called synchronously from the
 * loop: keep them cheap, and never throw.
 */
export interface LoopObserver {
  state?(state: LoopState, error?: Error): void;
  /** A batch was applied and its checkpoint recorded. */
  batch?(report: BatchReport): void;
  /** The source had nothing new for a while: the loop is caught up. */
  idle?(): void;
  /** A change on a replicated namespace that mmm does not replicate (./commands.ts). */
  warning?(warning: LinkWarning): void;
  /** How many writes from this source the destination keeps as refused (mmm.refused), ever. */
  refusedKept?(kept: number): void;
  /**
   * The loop has ended: finish what is in flight (a last status write). The runner awaits it
   * before closing the connections.
   */
  close?(): Promise<void>;
}

/** One cursor batch, read and planned, waiting to be applied. */
interface ReadBatch {
  /** An empty batch: the source had nothing new. */
  idle: boolean;
  /** Oplog entries read. */
  weight: number;
  /** Their size as BSON. */
  bytes: number;
  writes: DestinationWrite[];
  /** The position a restart may resume from once these writes (and all before) are applied. */
  safe: Timestamp;
  lastWall?: Date;
}

export class SourceLoop {
  private readonly router: Router;
  private readonly tailer: OplogTailer;
  private readonly links: readonly Link[];
  private readonly log: Logger;
  private readonly observer: LoopObserver;
  private readonly applyOptions: ApplyOptions;
  /** The links whose writes are checked for conflicts. */
  private readonly resolving: readonly Link[];
  /** Of their destination namespaces, those that more than one source replicates into (../conflict/tombstones.ts). */
  private readonly manySources: ReadonlySet<string>;

  constructor(private readonly options: SourceLoopOptions) {
    this.links = options.linksBySource.get(options.source.id) ?? [];
    const resolves = options.settings.conflicts.kind === 'off' ? undefined : options.resolves;
    this.resolving = this.links.filter((link) => !link.copying && resolves?.(link) === true);
    this.manySources = new Set(this.resolving.map((link) => link.dst).filter((dst) => sourcesInto(options.linksBySource, dst) > 1));
    this.router = new Router({
      destinationId: options.destination.id,
      sourceId: options.source.id,
      linksBySource: options.linksBySource,
      ...(resolves ? { resolves } : {}),
    });
    // Metadata in a replicated database puts mmm's own writes in the oplog (../oplog/skip-namespace.ts).
    const { metadataDb } = options.source;
    const local = metadataDb === undefined || metadataDb === 'local';
    const filter = oplogFilter(this.router.sourceNamespaces, { noops: !local });
    this.tailer = local
      ? new OplogTailer(options.sourceClient, options.settings, filter)
      : new OplogTailerSkipping(options.sourceClient, options.settings, filter, metadataNamespace(options.source));
    this.log = options.logger.child({ source: options.source.name, destination: options.destination.name });
    this.observer = options.observer ?? {};
    const { settings, destinationClient, source } = options;
    this.applyOptions = {
      writeConcern: settings.writeConcern,
      logger: this.log,
      sourceId: source.id,
      refused: new RefusedWrites(destinationClient, source.id, settings.writeConcern),
      onRefused: settings.onRefused,
      maxTimeMS: settings.maxTimeMS,
      // A server this loop writes may relay these deletes to one that resolves conflicts.
      listDeletes: settings.conflicts.kind !== 'off',
      // A write made there after this loop's: later, by the time conflicts are decided with.
      ...(settings.conflicts.kind !== 'off' && settings.carryClock ? { clock: new CarriedClock(this.log) } : {}),
      ...(this.resolving.length > 0
        ? { resolver: new ConflictResolver({ destinationId: options.destination.id, sourceId: source.id, policy: settings.conflicts, manySources: this.manySources }) }
        : {}),
    };
  }

  /**
   * Runs until `signal` is aborted (resolves 'stopped') or a failure that retrying cannot mend.
   *
   * A transient failure (a server down, stepping down, unreachable) is retried from the last
   * checkpoint, after a wait that doubles from `retryInitialMs` up to `retryMaxMs`; each attempt
   * blocks as long as the driver's server selection timeout. It logs one warning when the link
   * loses a server and one line when the link works again, with a debug line per retry between.
   */
  async run(signal: AbortSignal): Promise<LoopOutcome> {
    this.observer.state?.('running');
    const { settings } = this.options;
    let delay = settings.retryInitialMs;
    let lost: Error | undefined;
    let position: Timestamp | undefined;
    while (!signal.aborted) {
      try {
        if (position === undefined) {
          position = await this.startingPosition();
          await this.reportRefused();
          // Reading starts here (for a link that came with a `since`, from there: Router.startAt).
          this.logLinks('link started', { checkpoint: formatTs(position) });
        } else if (lost !== undefined) {
          // A batch with nothing to apply never touches the destination: check it is back too.
          await this.checkDestination();
        }
        for await (const _ of this.follow(position, signal, (p) => (position = p))) {
          if (lost !== undefined) {
            this.log.info({ checkpoint: formatTs(position) }, 'link recovered');
            this.observer.state?.('running');
            lost = undefined;
            delay = settings.retryInitialMs;
          }
        }
      } catch (err) {
        if (signal.aborted) break;
        const error = await this.explain(err, position);
        if (!isTransient(error)) {
          this.logLinks('link failed', error);
          this.observer.state?.('failed', error);
          return { state: 'failed', error };
        }
        if (lost === undefined) this.log.warn({ err: error.message }, `link lost its server; retrying`);
        this.log.debug({ err: error.message, error: error.name, ...errorCode(error), retryInMs: delay }, 'retrying');
        this.observer.state?.('retrying', error);
        lost = error;
        await sleep(delay, signal);
        delay = Math.min(delay * 2, settings.retryMaxMs);
      }
    }
    this.logLinks('link stopped');
    this.observer.state?.('stopped');
    return { state: 'stopped' };
  }

  /**
   * Times a `ping` to the destination for the batch bounds. A failure is left to the writes,
   * which meet it too and report it; the markers' times still count.
   */
  private async probeRoundTrip(bounds: BatchBounds): Promise<void> {
    const at = performance.now();
    try {
      await this.options.destinationClient.db('admin').command({ ping: 1 });
      bounds.probed(performance.now() - at, at);
    } catch {
      // The markers' times still count.
    }
  }

  /**
   * Where reading starts: the checkpoint, or earlier for a link it does not cover yet (one added
   * while a run went on: Router.startAt). A loop never run before starts at its links' `since`
   * (when `replicate` made them); links made by older versions, which have none, at the source's
   * newest entry, recorded at once.
   */
  private async startingPosition(): Promise<Timestamp> {
    const { store, source, destinationClient, sourceClient } = this.options;
    await prepareDestination(destinationClient, source.id);
    if (this.resolving.length > 0) {
      // Checking a write needs its source's pre-image, and an insert the destination's (its
      // deletes): kept from now on (../conflict/preimages.ts).
      await keepPreImages(sourceClient, [...new Set(this.resolving.map((link) => link.src))]);
      await keepPreImages(destinationClient, [...new Set(this.resolving.map((link) => link.dst))]);
      await prepareConflicts(destinationClient);
      if (this.manySources.size > 0) await prepareTombstones(destinationClient);
    }
    const start = this.router.startAt(await store.checkpoint(source.id));
    if (start) return start;
    const newest = await this.tailer.newest();
    await store.saveCheckpoint(source.id, newest);
    // No link to start from (the only ones are being copied): the newest entry itself.
    return this.router.startAt(newest) ?? newest;
  }

  /**
   * Reads and applies from `position` on; yields after each batch (empty ones included) so
   * `run` can tell a working link from a failing one, and reports each new checkpoint.
   *
   * Two stages joined by a bounded queue: a reader that reads, decodes, routes and plans the
   * writes of each cursor batch, up to `readAheadEntries` entries ahead, and this applier, which
   * takes whatever has been read (up to `applyBatchWrites` writes), applies it in parallel
   * partitions, and only then records the checkpoint: the position after the last entry taken,
   * all of whose writes are acknowledged (recorded while the next batch is applied). A full
   * queue stops the reader (backpressure). Over a long link both bounds grow (./batch-bounds.ts).
   */
  private async *follow(position: Timestamp, signal: AbortSignal, checkpointed: (p: Timestamp) => void): AsyncGenerator<void> {
    const { store, source, destinationClient, settings } = this.options;
    const bounds = new BatchBounds(settings);
    // Timed while nothing else runs: the markers of a backlog may all be late.
    const [oldest] = await Promise.all([this.tailer.oldest(), this.probeRoundTrip(bounds)]);
    if (oldest.greaterThan(position)) throw this.rolledOver(position, oldest);
    const capacity = (b: Bounds) => ({ entries: b.readAheadEntries, bytes: b.readAheadBytes });
    const queue = new ReadAheadQueue<ReadBatch>(capacity(bounds.current));
    const applyOptions: ParallelApplyOptions = { ...this.applyOptions, partitions: settings.applyPartitions, roundTrip: (ms) => bounds.roundTrip(ms) };
    const reading = new AbortController();
    const stopReading = () => reading.abort();
    signal.addEventListener('abort', stopReading, { once: true });
    const reader = this.read(position, reading.signal, queue);
    let recording: Promise<void> = Promise.resolve();
    let probing: Promise<void> | undefined;
    try {
      while (!signal.aborted) {
        let writes = -1;
        let bytes = 0;
        const { applyBatchWrites, applyBatchBytes } = bounds.current;
        // Cut short by the bounds: the reader waits for room, or more was read than they let through.
        let cut = queue.full;
        const taken = await queue.take((so, next) => {
          if (writes < 0) [writes, bytes] = [so[0]!.writes.length, so[0]!.bytes];
          if (so[0]!.idle || next.idle) return false;
          if (writes + next.writes.length > applyBatchWrites || bytes + next.bytes > applyBatchBytes) {
            cut = true;
            return false;
          }
          writes += next.writes.length;
          bytes += next.bytes;
          return true;
        });
        if (taken.length === 0) return; // reading ended: the signal was aborted
        const last = taken[taken.length - 1]!;
        if (last.idle) {
          await recording; // a failed checkpoint write fails the loop here
          // Nothing to apply, but the server read on past entries this loop does not read.
          if (!last.safe.equals(position)) {
            position = last.safe;
            await this.recordCheckpoint(last.safe, { entries: 0, stats: emptyStats() }, checkpointed);
          }
          if (queue.size === 0) this.observer.idle?.();
          yield;
          continue;
        }
        if (!probing && bounds.probeDue(performance.now())) {
          probing = this.probeRoundTrip(bounds).finally(() => (probing = undefined));
        }
        const planned = taken.length === 1 ? last.writes : taken.flatMap((b) => b.writes);
        const held = taken.reduce((sum, b) => sum + b.bytes, 0);
        const fill = cut ? Math.max(planned.length / applyBatchWrites, held / applyBatchBytes) : undefined;
        const started = performance.now();
        const stats = planned.length > 0 ? await applyInParallel(destinationClient, planned, applyOptions) : emptyStats();
        if (planned.length > 0 && bounds.applied(performance.now() - started, fill)) {
          queue.resize(capacity(bounds.current));
          const { applyBatchWrites: writes, applyBatchBytes: bytes } = bounds.current;
          this.log.info({ roundTripMs: Math.round(bounds.roundTripMs!), writes, bytes }, 'batch bounds changed for the round trip to the destination');
        }
        // Every write up to `last.safe` is acknowledged: record it. The write goes on while the
        // next batch is applied (one round trip less per batch); checkpoints stay in order, as
        // the next one waits for this one.
        await recording;
        const entries = taken.reduce((sum, b) => sum + b.weight, 0);
        const report = { entries, stats, ...(last.lastWall ? { lastWall: last.lastWall } : {}) };
        const safe = last.safe;
        const moved = !safe.equals(position);
        position = safe;
        recording = (async () => {
          if (moved) await this.recordCheckpoint(safe, report, checkpointed);
          else this.observer.batch?.({ ...report, checkpoint: safe });
          if (stats.failed > 0) await this.reportRefused();
        })();
        // Awaited before the next checkpoint or idle report, and when the loop ends.
        recording.catch(() => undefined);
        yield;
      }
      await recording;
    } finally {
      reading.abort();
      signal.removeEventListener('abort', stopReading);
      queue.close();
      await Promise.all([reader, recording.catch(() => undefined)]);
    }
  }

  /** Records `safe` as the checkpoint (every write up to it is applied), then reports it. */
  private async recordCheckpoint(safe: Timestamp, report: Omit<BatchReport, 'checkpoint'>, checkpointed: (p: Timestamp) => void): Promise<void> {
    const { store, source } = this.options;
    await store.saveCheckpoint(source.id, safe, this.router.coveredBy(safe));
    checkpointed(safe);
    this.observer.batch?.({ ...report, checkpoint: safe });
  }

  /** The count survives restarts: it is read from where the refused writes are kept. */
  private async reportRefused(): Promise<void> {
    this.observer.refusedKept?.(await this.applyOptions.refused.count());
  }

  /** The reading stage of follow(): fills `queue` until `signal` is aborted or reading fails. */
  private async read(after: Timestamp, signal: AbortSignal, queue: ReadAheadQueue<ReadBatch>): Promise<void> {
    const decoder = new OplogDecoder(after);
    try {
      for await (const { entries, bytes, scanned } of this.tailer.batches(after, signal)) {
        if (entries.length === 0) {
          if (scanned) decoder.passed(scanned);
          if (!(await queue.push({ idle: true, weight: 0, bytes: 0, writes: [], safe: decoder.safePosition }))) return;
          continue;
        }
        const decoded = decoder.decode(entries);
        if (scanned) decoder.passed(scanned);
        this.reportCommands(decoded);
        const { writes, preImageBytes } = await this.plan(decoded.changes.flatMap((change) => this.router.route(change)));
        const lastWall = entries[entries.length - 1]!.wall;
        // The pre-images count as what is held ahead, with the entries (a small update of a large document brings it whole).
        const held = bytes + preImageBytes;
        const batch: ReadBatch = { idle: false, weight: entries.length, bytes: held, writes, safe: decoder.safePosition, ...(lastWall ? { lastWall } : {}) };
        if (!(await queue.push(batch))) return;
      }
      queue.end();
    } catch (err) {
      queue.fail(err);
    }
  }

  /** The writes that replay `routed`; those of links that resolve conflicts carry their check, with the source's pre-images. */
  private async plan(routed: readonly RoutedChange[]): Promise<{ writes: DestinationWrite[]; preImageBytes: number }> {
    const writes = routed.map((r) => planWrite(r.change, r.ns, r.tag, r.origin));
    if (!routed.some((r) => r.resolve)) return { writes, preImageBytes: 0 };
    const keys = routed.flatMap((r) => (r.resolve && r.change.preImage ? [r.change.preImage] : []));
    const images = await readPreImages(this.options.sourceClient, keys);
    let preImageBytes = 0;
    for (const image of images.values()) preImageBytes += image.length;
    routed.forEach((r, k) => {
      if (!r.resolve) return;
      const { change } = r;
      // Every tag the router gives parses; the fallback is the version the tag would name.
      const version = parseTag(r.tag) ?? { origin: r.origin, ts: change.ts };
      writes[k]!.check = { version, base: change.op === 'i' ? null : change.preImage && images.get(preImageId(change.preImage)) };
    });
    return { writes, preImageBytes };
  }

  /** DDL and time-series writes are not replicated; say so when they touch a replicated namespace. */
  private reportCommands(decoded: DecodedBatch): void {
    const warnings = linkWarnings({
      commands: decoded.commands,
      changes: decoded.changes,
      linked: new Set(this.router.sourceNamespaces),
      source: this.options.source.name,
    });
    for (const warning of warnings) {
      const { command, ns, ts, message } = warning;
      this.log.warn({ command, ns, ts: formatTs(ts) }, message);
      this.observer.warning?.(warning);
    }
  }

  /**
   * After a lost server: a read on the destination's primary, so that recovery means both sides
   * answer. Then the transactions this loop's lost connections may have left open there, which
   * would hold up the replay of their deletes for a minute (../apply/abandoned.ts).
   */
  private async checkDestination(): Promise<void> {
    const { store, source, destinationClient } = this.options;
    await store.checkpoint(source.id);
    const aborted = await abortAbandonedTransactions(destinationClient).catch((err: unknown) => {
      this.log.debug({ err: (err as Error).message }, 'could not look for transactions mmm had left open');
      return 0;
    });
    if (aborted > 0) this.log.info({ transactions: aborted }, 'aborted transactions mmm had left open');
  }

  private async explain(err: unknown, position: Timestamp | undefined): Promise<Error> {
    // The server lost the cursor's place, or the tailer found its place gone when reopening.
    const lost = (err instanceof MongoServerError && serverErrorCode(err) === CAPPED_POSITION_LOST) || err instanceof OplogRolledOverError;
    if (lost && position) {
      const oldest = await this.tailer.oldest().catch(() => undefined);
      return this.rolledOver(position, oldest);
    }
    // A privilege refused mid-run: one line saying which, not the raw server command.
    const unauthorized = describeUnauthorized(err);
    if (unauthorized !== undefined) return new Error(unauthorized, { cause: err });
    return err instanceof Error ? err : new Error(String(err));
  }

  private rolledOver(checkpoint: Timestamp, oldest: Timestamp | undefined): OplogRolledOverError {
    const { source, destination } = this.options;
    return new OplogRolledOverError(
      `the oplog of ${source.name} no longer holds the checkpoint of ${destination.name} for it ` +
        `(checkpoint ${formatTs(checkpoint)}, oldest entry ${oldest ? formatTs(oldest) : 'unknown'}): ` +
        `changes made on ${source.name} in between are lost to mmm, so its links into ${destination.name} stop. ` +
        `To recover: run \`mmm reset-checkpoint --src ${source.name} --dst ${destination.name}\`, ` +
        `copy the replicated collections from ${source.name} to ${destination.name} again (e.g. mongodump/mongorestore), then restart \`mmm run\``,
    );
  }

  /** One line per link: `detail` is the error of a failed link, or more fields. */
  private logLinks(message: string, detail?: Error | Record<string, string>): void {
    const { source, destination } = this.options;
    for (const link of this.links) {
      const fields = { src: `${source.name}/${link.src}`, dst: `${destination.name}/${link.dst}`, ops: link.ops };
      if (detail instanceof Error) this.log.error({ ...fields, err: detail.message, ...errorCode(detail) }, message);
      else this.log.info({ ...fields, ...detail }, message);
    }
  }
}

/** The server's error code, for the log: it tells apart errors whose messages look alike. */
function errorCode(error: Error): { code?: number } {
  const code = serverErrorCode(error);
  return code === undefined ? {} : { code };
}

/** How many sources have a link into destination namespace `dst`. */
function sourcesInto(linksBySource: ReadonlyMap<string, readonly Link[]>, dst: string): number {
  let sources = 0;
  for (const links of linksBySource.values()) if (links.some((link) => link.dst === dst)) sources++;
  return sources;
}
