// One replication loop: a source server's oplog, read from the destination's checkpoint, applied
// to the destination, checkpoint recorded after. The stages (read, decode, route, apply,
// checkpoint) are separate modules; this file only strings them together and handles failure.
//
// The checkpoint is written only after every write before it is applied (with the destination's
// write concern), so after a crash the loop replays from the checkpoint, and the replayed writes
// converge because each is idempotent (../apply/writer.ts).

import type { MongoClient, Timestamp } from 'mongodb';
import { MongoServerError } from 'mongodb';
import { applyWrites, emptyStats, planWrite, type ApplyStats } from '../apply/writer.ts';
import { isTransient } from '../apply/transient.ts';
import type { Link, ReplicationConfigStore } from '../config/store.ts';
import { OplogRolledOverError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { formatTs, OplogDecoder, type SkippedCommand } from '../oplog/decode.ts';
import { OplogTailer } from '../oplog/tailer.ts';
import type { ServerSpec } from '../topology.ts';
import { Router } from './route.ts';
import type { ReplicationSettings } from './settings.ts';
import { attributeOrigins } from './tag.ts';

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
}

export class SourceLoop {
  private readonly router: Router;
  private readonly tailer: OplogTailer;
  private readonly links: readonly Link[];
  private readonly log: Logger;
  private readonly observer: LoopObserver;

  constructor(private readonly options: SourceLoopOptions) {
    this.links = options.linksBySource.get(options.source.id) ?? [];
    this.router = new Router({
      destinationId: options.destination.id,
      sourceId: options.source.id,
      linksBySource: options.linksBySource,
    });
    this.tailer = new OplogTailer(options.sourceClient, options.settings);
    this.log = options.logger.child({ source: options.source.name, destination: options.destination.name });
    this.observer = options.observer ?? {};
  }

  /** Runs until `signal` is aborted (resolves 'stopped') or a failure that retrying cannot mend. */
  async run(signal: AbortSignal): Promise<LoopOutcome> {
    this.logLinks('link started');
    this.observer.state?.('running');
    const { settings } = this.options;
    let delay = settings.retryInitialMs;
    let lost: unknown;
    let position: Timestamp | undefined;
    while (!signal.aborted) {
      try {
        position ??= await this.startingPosition();
        for await (const _ of this.follow(position, signal, (p) => (position = p))) {
          if (lost !== undefined) {
            this.log.info('link recovered');
            this.observer.state?.('running');
            lost = undefined;
            delay = settings.retryInitialMs;
          }
        }
      } catch (err) {
        if (signal.aborted) break;
        const error = this.explain(err, position);
        if (!isTransient(error)) {
          this.logLinks('link failed', error);
          this.observer.state?.('failed', error);
          return { state: 'failed', error };
        }
        if (lost === undefined) this.log.warn({ err: error.message }, `link lost its server; retrying`);
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

  /** The checkpoint, or for a link never run, the source's newest entry (recorded at once). */
  private async startingPosition(): Promise<Timestamp> {
    const { store, source } = this.options;
    const saved = await store.checkpoint(source.id);
    if (saved) return saved;
    const newest = await this.tailer.newest();
    await store.saveCheckpoint(source.id, newest);
    return newest;
  }

  /**
   * Reads and applies from `position` on; yields after each batch (empty ones included) so
   * `run` can tell a working link from a failing one, and reports each new checkpoint.
   */
  private async *follow(position: Timestamp, signal: AbortSignal, checkpointed: (p: Timestamp) => void): AsyncGenerator<void> {
    const { store, source, destinationClient, settings } = this.options;
    const oldest = await this.tailer.oldest();
    if (oldest.greaterThan(position)) throw this.rolledOver(position, oldest);
    const decoder = new OplogDecoder(position);
    for await (const entries of this.tailer.batches(position, signal)) {
      if (entries.length === 0) {
        this.observer.idle?.();
        yield;
        continue;
      }
      const decoded = decoder.decode(entries);
      this.reportCommands(decoded.commands);
      const writes = attributeOrigins(decoded.changes)
        .flatMap((change) => this.router.route(change))
        .map((routed) => planWrite(routed.change, routed.ns, routed.tag));
      const stats = writes.length > 0
        ? await applyWrites(destinationClient, writes, { writeConcern: settings.writeConcern, logger: this.log })
        : emptyStats();
      const safe = decoder.safePosition;
      if (!safe.equals(position)) {
        await store.saveCheckpoint(source.id, safe);
        position = safe;
        checkpointed(safe);
      }
      const lastWall = entries[entries.length - 1]!.wall;
      this.observer.batch?.({ entries: entries.length, stats, checkpoint: position, ...(lastWall ? { lastWall } : {}) });
      yield;
    }
  }

  /** DDL is not replicated; say so when it touches a replicated namespace. */
  private reportCommands(commands: readonly SkippedCommand[]): void {
    const namespaces = new Set(this.router.sourceNamespaces);
    for (const cmd of commands) {
      const target = cmd.name === 'renameCollection' ? String(cmd.o.renameCollection) : `${cmd.db}.${String(cmd.o[cmd.name])}`;
      const touches = cmd.name === 'dropDatabase' ? [...namespaces].some((ns) => ns.startsWith(`${cmd.db}.`)) : namespaces.has(target);
      // `create` comes with every first insert, and index builds come in several entries.
      if (!touches || cmd.name === 'create' || cmd.name === 'startIndexBuild' || cmd.name === 'abortIndexBuild') continue;
      this.log.warn({ command: cmd.name, ns: target, ts: formatTs(cmd.ts) }, 'command not replicated (mmm replicates documents, not DDL)');
    }
  }

  private explain(err: unknown, position: Timestamp | undefined): Error {
    if (err instanceof MongoServerError && err.code === CAPPED_POSITION_LOST && position) {
      return this.rolledOver(position, undefined);
    }
    return err instanceof Error ? err : new Error(String(err));
  }

  private rolledOver(checkpoint: Timestamp, oldest: Timestamp | undefined): OplogRolledOverError {
    const { source, destination } = this.options;
    return new OplogRolledOverError(
      `the oplog of ${source.name} no longer holds the checkpoint of ${destination.name} ` +
        `(checkpoint ${formatTs(checkpoint)}${oldest ? `, oldest entry ${formatTs(oldest)}` : ''}): ` +
        `changes in between are lost to mmm; copy the collections again, then reset the checkpoint`,
    );
  }

  private logLinks(message: string, error?: Error): void {
    const { source, destination } = this.options;
    for (const link of this.links) {
      const fields = { src: `${source.name}/${link.src}`, dst: `${destination.name}/${link.dst}`, ops: link.ops };
      if (error) this.log.error({ ...fields, err: error.message }, message);
      else this.log.info(fields, message);
    }
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
