// A replication run: for every destination server (or the one asked for), one SourceLoop per
// source server it has links from, all sharing one connection pool per server.

import type { MongoClient } from 'mongodb';
import { abortAbandonedTransactions } from '../apply/abandoned.ts';
import { metadataStoreOptions, ReplicationConfigStore, type Link } from '../config/store.ts';
import { UsageError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { Topology, type ServerSpec } from '../topology.ts';
import { DEFAULT_SETTINGS, type ReplicationSettings } from './settings.ts';
import { hasWayBack, type LinkEdge } from '../conflict/scope.ts';
import { sleep } from './sleep.ts';
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
 * loop ended. Throws UsageError if there is nothing to replicate when it starts. While it runs,
 * it follows the links each destination holds (`replicate`, `unreplicate`, `clear-config` made
 * meanwhile): see DestinationRun.
 */
export async function runReplication(options: RunOptions, signal: AbortSignal): Promise<LoopReport[]> {
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
      // A server that did not answer is asked again next time (a link to it added later).
      c.catch(() => clients.delete(server.id));
    }
    return c;
  };

  const ended = new Wakeup();
  const runs: DestinationRun[] = [];
  try {
    for (const destination of destinations) {
      const run = new DestinationRun({ ...options, topology, settings, destination, client, onLoopEnded: () => ended.wake() });
      await run.start();
      runs.push(run);
    }
    if (runs.every((r) => r.loopCount === 0)) throw new UsageError('no replication links to run: add one with `mmm replicate`');
    // Following ends with the run, whether stopped or ended by itself.
    const done = new AbortController();
    const endFollowing = () => done.abort();
    signal.addEventListener('abort', endFollowing, { once: true });
    const following = runs.map((r) => r.follow(done.signal));
    // Until stopped, or until every loop has ended by itself (each has said why). With no link
    // left at all (all removed while running), it waits for new ones.
    const goesOn = () => runs.some((r) => r.running) || runs.every((r) => r.loopCount === 0);
    while (!signal.aborted && goesOn()) await ended.wait(signal);
    endFollowing();
    signal.removeEventListener('abort', endFollowing);
    await Promise.all(following);
    await Promise.all(runs.map((r) => r.stop()));
    return runs.flatMap((r) => r.reports);
  } finally {
    await Promise.all(runs.map((r) => r.stop()));
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

interface DestinationRunOptions extends RunOptions {
  settings: ReplicationSettings;
  destination: ServerSpec;
  client: (server: ServerSpec) => Promise<MongoClient>;
  /** Called each time one of its loops ends. */
  onLoopEnded: () => void;
}

interface RunningLoop {
  source: ServerSpec;
  controller: AbortController;
  done: Promise<LoopReport>;
  report?: LoopReport;
}

/**
 * The loops into one destination: one per source server it has links from. Every
 * `linkPollMs` it reads the destination's links again; when they changed, it stops its loops
 * (each finishes its batch and records its checkpoint) and starts them again with the new
 * links, which the loops' routing needs all of (../replicate/route.ts, rule 3). A link added
 * meanwhile carries its `since` (config/store.ts), so the loop goes back for what was written
 * to it from then on.
 */
class DestinationRun {
  private loops: RunningLoop[] = [];
  private links = '';
  private store!: ReplicationConfigStore;
  private destinationClient!: MongoClient;
  /** The primary the links were read from: with links in `local`, another one has none of them. */
  private primary: string | undefined;
  private restarting = false;
  /** Each server's links as last read: for a server that does not answer (topologyLinks). */
  private readonly knownLinks = new Map<string, LinkEdge[]>();

  constructor(private readonly options: DestinationRunOptions) {}

  get loopCount(): number {
    return this.loops.length;
  }

  /** True while one of its loops still runs, or while they restart. */
  get running(): boolean {
    return this.restarting || this.loops.some((l) => l.report === undefined);
  }

  get reports(): LoopReport[] {
    return this.loops.flatMap((l) => (l.report ? [l.report] : []));
  }

  async start(): Promise<void> {
    const { destination, logger, topology } = this.options;
    this.destinationClient = await this.options.client(destination);
    await abortAbandoned(this.destinationClient, destination, logger);
    this.store = new ReplicationConfigStore(this.destinationClient, {
      ...(this.options.store ?? metadataStoreOptions(destination)),
      onMissing: warnOnce(logger, topology, destination, this.options.store?.database ?? destination.metadataDb),
    });
    const { linksBySource, key, resolves } = await this.readLinks();
    this.primary = await this.currentPrimary();
    await this.startLoops(linksBySource, key, resolves);
  }

  /** Follows link changes until `signal` is aborted. */
  async follow(signal: AbortSignal): Promise<void> {
    const { logger, destination, settings } = this.options;
    let failing = false;
    while (!signal.aborted) {
      await sleep(settings.linkPollMs, signal);
      if (signal.aborted) break;
      try {
        const { linksBySource, key, resolves } = await this.readLinks();
        failing = false;
        if (key === this.links) continue;
        if (this.lostWithFailover(await this.currentPrimary())) continue;
        logger.info({ destination: destination.name }, 'links changed; restarting the loops into this destination to follow them');
        this.restarting = true;
        try {
          await this.stop();
          if (!signal.aborted) await this.startLoops(linksBySource, key, resolves);
        } finally {
          this.restarting = false;
          this.options.onLoopEnded();
        }
      } catch (err) {
        // The destination is away: its loops say so, and retry on their own.
        if (!failing) logger.debug({ destination: destination.name, err: (err as Error).message }, 'could not read the links');
        failing = true;
      }
    }
  }

  /** Stops every loop and waits for them. */
  async stop(): Promise<void> {
    for (const loop of this.loops) loop.controller.abort();
    await Promise.all(this.loops.map((l) => l.done));
  }

  private async readLinks(): Promise<{ linksBySource: Map<string, Link[]>; key: string; resolves: (sourceId: string, link: Link) => boolean }> {
    const linksBySource = new Map<string, Link[]>();
    for (const config of await this.store.sources()) {
      if (config.links.length > 0) linksBySource.set(config.sourceId, config.links);
    }
    const { edges, complete } = await this.topologyLinks();
    const wayBack = hasWayBack(edges, complete);
    const { destination } = this.options;
    const resolves = (sourceId: string, link: Link) => wayBack({ source: sourceId, destination: destination.id, src: link.src, dst: link.dst, ops: link.ops });
    // `created` tells a link made again (its `since` new) from the same link, whose `since` a
    // checkpoint of ours removed: that is no change. A copy that ends (`copying` goes) is one.
    // So is a change elsewhere that gives one of ours a way back, or takes it away.
    const key = JSON.stringify(
      [...linksBySource.entries()].map(([id, links]) => [id, links.map((l) => [l.src, l.dst, l.ops, l.created.getTime(), l.copying === true, resolves(id, l)])]),
    );
    return { linksBySource, key, resolves };
  }

  /**
   * Every link of the topology, read from each server (../conflict/scope.ts). A server that
   * cannot be read counts with the links it had when last read (so that a server away does not
   * change which links resolve); `complete` is false when one was never read.
   */
  private async topologyLinks(): Promise<{ edges: LinkEdge[]; complete: boolean }> {
    const { topology, destination } = this.options;
    const edges: LinkEdge[] = [];
    let complete = true;
    await Promise.all(
      topology.servers.map(async (server) => {
        const own: LinkEdge[] = [];
        try {
          const sources = async () => {
            if (server.id === destination.id) return this.store.sources();
            return new ReplicationConfigStore(await this.options.client(server), this.options.store ?? metadataStoreOptions(server)).sources();
          };
          // A server away is not waited for: its links count as unknown.
          for (const config of await within(TOPOLOGY_READ_MS, sources())) {
            for (const link of config.links) own.push({ source: config.sourceId, destination: server.id, src: link.src, dst: link.dst, ops: link.ops });
          }
          this.knownLinks.set(server.id, own);
        } catch {
          const known = this.knownLinks.get(server.id);
          if (known === undefined) complete = false;
          else own.push(...known);
        }
        edges.push(...own);
      }),
    );
    return { edges, complete };
  }

  private async currentPrimary(): Promise<string | undefined> {
    const hello = await this.destinationClient.db('admin').command({ hello: 1 });
    return typeof hello.me === 'string' ? hello.me : undefined;
  }

  /**
   * Links kept in `local` are this member's own: a new primary has none of them, which is not
   * the user removing them. Then the loops go on as they are (the store warns that a restart
   * will not find them), and link changes are no longer followed into this destination.
   */
  private lostWithFailover(primary: string | undefined): boolean {
    const database = this.options.store?.database ?? this.options.destination.metadataDb;
    return (database === undefined || database === 'local') && primary !== this.primary;
  }

  private async startLoops(linksBySource: Map<string, Link[]>, key: string, resolves: (sourceId: string, link: Link) => boolean): Promise<void> {
    const { destination, topology, logger, settings } = this.options;
    this.loops = [];
    for (const [sourceId, links] of linksBySource) {
      const source = topology.byId(sourceId);
      if (!source) {
        logger.warn({ destination: destination.name, source: sourceId }, 'links from a server the topology does not name are not run');
        continue;
      }
      const store = this.store;
      const observer = this.options.observe?.({ source, destination, links, store });
      const loop = new SourceLoop({
        source,
        destination,
        ...(observer ? { observer } : {}),
        sourceClient: await this.options.client(source),
        destinationClient: this.destinationClient,
        store,
        linksBySource,
        settings,
        logger,
        resolves: (link) => resolves(sourceId, link),
      });
      const controller = new AbortController();
      const running: RunningLoop = { source, controller, done: undefined as unknown as Promise<LoopReport> };
      running.done = (async () => {
        try {
          running.report = { source: source.name, destination: destination.name, outcome: await loop.run(controller.signal) };
          return running.report;
        } finally {
          await observer?.close?.().catch(() => undefined);
          this.options.onLoopEnded();
        }
      })();
      this.loops.push(running);
    }
    // Only once every loop started: a source that could not be reached is tried at the next poll.
    this.links = key;
  }
}

/** How long reading another server's links may take before they count as unknown. */
const TOPOLOGY_READ_MS = 2000;

function within<T>(ms: number, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms)));
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Lets one waiter sleep until something happens (or its signal is aborted). */
class Wakeup {
  private wakeWaiter: (() => void) | undefined;

  wake(): void {
    const wake = this.wakeWaiter;
    this.wakeWaiter = undefined;
    wake?.();
  }

  wait(signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        signal.removeEventListener('abort', done);
        resolve();
      };
      this.wakeWaiter = done;
      signal.addEventListener('abort', done, { once: true });
    });
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
