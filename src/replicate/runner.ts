// A replication run: for every destination server (or the one asked for), one SourceLoop per
// source server it has links from, all sharing one connection pool per server.

import type { MongoClient } from 'mongodb';
import { abortAbandonedTransactions } from '../apply/abandoned.ts';
import { metadataStoreOptions, ReplicationConfigStore, type Link } from '../config/store.ts';
import { UsageError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { Topology, type ServerSpec } from '../topology.ts';
import { DEFAULT_SETTINGS, type ReplicationSettings } from './settings.ts';
import { SourceLoop, type LoopObserver, type LoopOutcome } from './source-loop.ts';

export interface RunOptions {
  topology: Topology;
  /** Only replicate into this server (by topology name). */
  only?: string;
  logger: Logger;
  settings?: Partial<ReplicationSettings>;
  /** Opens a client for a server; the run closes every client it opened when it ends. */
  connect: (server: ServerSpec) => Promise<MongoClient>;
  /** Makes the observer of each loop (status recording, metrics); none by default. */
  observe?: (loop: { source: ServerSpec; destination: ServerSpec; links: readonly Link[]; store: ReplicationConfigStore }) => LoopObserver;
  /** Options for the metadata store (where links and checkpoints live); by default each destination's `metadataDb`. */
  store?: ConstructorParameters<typeof ReplicationConfigStore>[1];
}

export interface LoopReport {
  source: string;
  destination: string;
  outcome: LoopOutcome;
}

/**
 * Runs replication until `signal` is aborted or every loop has failed, and reports how each
 * loop ended. Throws UsageError if there is nothing to replicate.
 */
export async function runReplication(options: RunOptions, signal: AbortSignal): Promise<LoopReport[]> {
  const { logger } = options;
  // A store database given here is every server's, also as a source (whose metadata writes its
  // loops leave out of what they read: ../oplog/skip-namespace.ts).
  const database = options.store?.database;
  const topology =
    database === undefined ? options.topology : new Topology(options.topology.servers.map((s) => ({ ...s, metadataDb: database })));
  const settings = { ...DEFAULT_SETTINGS, ...options.settings };
  let destinations = topology.servers;
  if (options.only) {
    const only = topology.byName(options.only);
    if (!only) throw new UsageError(`unknown server '${options.only}'`);
    destinations = [only];
  }

  const clients = new Map<string, Promise<MongoClient>>();
  const client = (server: ServerSpec) => {
    let c = clients.get(server.id);
    if (!c) {
      c = options.connect(server);
      clients.set(server.id, c);
    }
    return c;
  };

  try {
    const loops: Array<{ source: ServerSpec; destination: ServerSpec; loop: SourceLoop; observer: LoopObserver | undefined }> = [];
    for (const destination of destinations) {
      const destinationClient = await client(destination);
      await abortAbandoned(destinationClient, destination, logger);
      const store = new ReplicationConfigStore(destinationClient, {
        ...(options.store ?? metadataStoreOptions(destination)),
        onMissing: warnOnce(logger, topology, destination, options.store?.database ?? destination.metadataDb),
      });
      const linksBySource = new Map<string, Link[]>();
      for (const config of await store.sources()) {
        if (config.links.length > 0) linksBySource.set(config.sourceId, config.links);
      }
      for (const sourceId of linksBySource.keys()) {
        const source = topology.byId(sourceId);
        if (!source) {
          logger.warn({ destination: destination.name, source: sourceId }, 'links from a server the topology does not name are not run');
          continue;
        }
        const links = linksBySource.get(sourceId)!;
        const observer = options.observe?.({ source, destination, links, store });
        const loop = new SourceLoop({
          source,
          destination,
          ...(observer ? { observer } : {}),
          sourceClient: await client(source),
          destinationClient,
          store,
          linksBySource,
          settings,
          logger,
        });
        loops.push({ source, destination, loop, observer });
      }
    }
    if (loops.length === 0) throw new UsageError('no replication links to run: add one with `mmm replicate`');
    return await Promise.all(
      loops.map(async ({ source, destination, loop, observer }) => {
        try {
          return { source: source.name, destination: destination.name, outcome: await loop.run(signal) };
        } finally {
          await observer?.close?.().catch(() => undefined);
        }
      }),
    );
  } finally {
    await Promise.all(
      [...clients.values()].map((c) =>
        c.then(
          (opened) => opened.close(),
          () => undefined,
        ),
      ),
    );
  }
}

/** A crashed mmm's open transactions would hold up the replay for a minute: see ../apply/abandoned.ts. */
async function abortAbandoned(client: MongoClient, destination: ServerSpec, logger: Logger): Promise<void> {
  try {
    const aborted = await abortAbandonedTransactions(client);
    if (aborted > 0) logger.info({ destination: destination.name, transactions: aborted }, 'aborted transactions mmm had left open');
  } catch (err) {
    logger.warn({ destination: destination.name, err: (err as Error).message }, 'could not look for transactions mmm had left open');
  }
}

/**
 * The warning, once per source, when a destination has lost the links of a running loop. The
 * loop goes on from what it holds in memory, but a restarted run will not find them.
 */
function warnOnce(logger: Logger, topology: Topology, destination: ServerSpec, metadataDb: string | undefined): (sourceId: string) => void {
  const warned = new Set<string>();
  const inLocal = metadataDb === undefined || metadataDb === 'local';
  return (sourceId) => {
    if (warned.has(sourceId)) return;
    warned.add(sourceId);
    logger.warn(
      { destination: destination.name, source: topology.byId(sourceId)?.name ?? sourceId, metadata: `${metadataDb ?? 'local'}.mmm` },
      `the destination has lost these links and their checkpoint (${inLocal ? 'a failover? local is not replicated, see --metadata-db; or ' : ''}` +
        'clear-config while running?): replicating on, but a restarted run will not find them',
    );
  };
}
