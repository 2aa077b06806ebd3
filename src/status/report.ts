// `mmm status` as data: for every destination and source (a loop) and its links, what the last
// run recorded (state, heartbeat, counters, last error) with the checkpoint, read from the
// destination's metadata, the conflicts the destination keeps (mmm.conflicts), and the source's
// oplog (lag, window). Servers that cannot be reached are reported as such and the rest is
// reported all the same.

import type { MongoClient, Timestamp } from 'mongodb';
import { metadataStoreOptions, ReplicationConfigStore, type ConfigStoreOptions, type SourceConfig } from '../config/store.ts';
import { redactUri, type ServerSpec, type Topology } from '../topology.ts';
import { describeUnauthorized } from '../check/privileges.ts';
import type { CachedLinks, LinksMemory } from './links-cache.ts';
import type { LoopStatusRecord } from './record.ts';
import { copiesInProgress, type CopyKey, type CopyState } from '../copy/state.ts';
import { copyView, type CopyView } from './copy-view.ts';
import { conflictCounts } from './conflict-records.ts';

/** A link's or a loop's state, as `status` tells it. */
export type LinkState = 'running' | 'retrying' | 'stopped' | 'error' | 'never started' | 'unknown' | 'copying';

/** An oplog position, with its seconds as a UTC time. */
export interface PositionView {
  t: number;
  i: number;
  /** ISO 8601, UTC, to the second. */
  time: string;
}

export interface OplogView {
  oldest: PositionView;
  newest: PositionView;
  /** Newest minus oldest entry. */
  windowHours: number;
  /** Data in the oplog and its configured size, when the server tells them. */
  usedMB: number | null;
  sizeMB: number | null;
}

export interface ServerView {
  name: string;
  id: string;
  /** With any password hidden. */
  uri: string;
  reachable: boolean;
  /** Why it cannot be reached or read. */
  error: string | null;
  oplog: OplogView | null;
}

export interface LinkView {
  dst: string;
  src: string;
  ops: string;
  state: LinkState;
  /** Only while `replicate --copy` copies the link's documents (state `copying`). */
  copy?: CopyView;
}

export interface RunView {
  host: string;
  pid: number;
  /** When the run started the loop: `applied` counts from then. */
  since: string;
  /** The run's last record, by the destination's clock, and its age by that clock too. */
  heartbeat: string;
  heartbeatAgeSeconds: number;
  /** The state the run recorded (`running` even if it ended without saying so). */
  recordedState: LoopStatusRecord['state'];
}

export interface LoopView {
  destination: string;
  /** The source's name, or its UUID when the topology does not name it. */
  source: string;
  sourceId: string;
  state: LinkState;
  /** With `error` and `retrying`: the error. */
  error: { message: string; at: string } | null;
  checkpoint: PositionView | null;
  /** Source's newest oplog entry minus the checkpoint; null when either is unknown. */
  lagSeconds: number | null;
  /** Writes applied by the last run, since `run.since`, by kind. Null before any run. */
  applied: { i: number; u: number; d: number } | null;
  missed: number | null;
  refused: number | null;
  /**
   * Versions on the destination that a concurrent write from this source overwrote, kept in its
   * mmm.conflicts: all it keeps (across runs, until removed there). Null when unknown.
   */
  conflicts: number | null;
  run: RunView | null;
  warnings: string[];
  /**
   * Changes on replicated namespaces that the last run met and did not replicate (DDL,
   * time-series writes): the newest few, oldest first, `at` by the source's clock.
   */
  notReplicated: Array<{ command: string; ns: string; message: string; at: string }>;
  links: LinkView[];
}

export interface StatusReport {
  /** When status looked, by this machine's clock. */
  time: string;
  servers: ServerView[];
  loops: LoopView[];
}

export interface StatusOptions {
  topology: Topology;
  /** Opens a client (throws ServerError when it cannot); status closes what it opened. */
  connect: (server: ServerSpec) => Promise<MongoClient>;
  /** Where the metadata is; by default each server's own (`metadataDb`, or local). */
  store?: ConfigStoreOptions;
  /**
   * Where status keeps each destination's links as last read, to list them (state `unknown`)
   * while that destination cannot be reached (./links-cache.ts); none by default.
   */
  linksMemory?: LinksMemory;
  now?: () => Date;
}

/** A recorded `running` whose heartbeat is older than this many heartbeat intervals is `stopped`. */
export const STALE_HEARTBEATS = 3;
/** ... plus this much slack for a slow write, in seconds. */
const STALE_SLACK_SECONDS = 2;
/** Warn when the checkpoint will fall out of the oplog within this fraction of its full window. */
export const OPLOG_WARNING_FRACTION = 0.2;

/** What one reachable server told. */
interface ServerFacts {
  /** The server's clock. */
  localTime: Date;
  oplog: { oldest: Timestamp; newest: Timestamp; usedBytes?: number; maxBytes?: number };
  sources: SourceConfig[];
  /** Copies in progress into this server (`replicate --copy`). */
  copies: Array<CopyKey & CopyState>;
  /** The conflicts it keeps, by source UUID; null when they cannot be read. */
  conflicts: Map<string, number> | null;
}

export async function collectStatus(options: StatusOptions): Promise<StatusReport> {
  const { topology } = options;
  const now = options.now ?? (() => new Date());
  const facts = await Promise.all(topology.servers.map((server) => serverFacts(server, options)));
  const servers: ServerView[] = topology.servers.map((server, k) => {
    const f = facts[k]!;
    return {
      name: server.name,
      id: server.id,
      uri: redactUri(server.uri),
      reachable: !('error' in f),
      error: 'error' in f ? f.error : null,
      oplog: 'error' in f ? null : oplogView(f.oplog),
    };
  });
  const loops: LoopView[] = [];
  topology.servers.forEach((destination, k) => {
    const f = facts[k]!;
    if ('error' in f) {
      loops.push(...unknownLoops(destination, f.error, options.linksMemory?.read(destination.id), topology, now()));
      return;
    }
    options.linksMemory?.write(destination.id, f.sources.filter((c) => c.links.length > 0), now());
    for (const config of f.sources) {
      if (config.links.length === 0) continue;
      const source = topology.byId(config.sourceId);
      const sourceFacts = source ? facts[topology.servers.indexOf(source)] : undefined;
      loops.push(loopView(destination, source, config, f, sourceFacts));
    }
  });
  return { time: iso(now()), servers, loops };
}

async function serverFacts(server: ServerSpec, options: StatusOptions): Promise<ServerFacts | { error: string }> {
  let client: MongoClient;
  try {
    client = await options.connect(server);
  } catch (err) {
    return { error: (err as Error).message };
  }
  try {
    const [hello, oplog, sources, copies, conflicts] = await Promise.all([
      client.db('admin').command({ hello: 1 }),
      oplogFacts(client),
      new ReplicationConfigStore(client, options.store ?? metadataStoreOptions(server)).sources(),
      // A user allowed to read the metadata but not mmm's database sees no copy progress.
      copiesInProgress(client).catch(() => []),
      // The same for the conflicts: their counts are unknown.
      conflictCounts(client).catch(() => null),
    ]);
    return { localTime: hello.localTime as Date, oplog, sources, copies, conflicts };
  } catch (err) {
    return { error: `${server.name}: ${describeUnauthorized(err) ?? (err as Error).message}` };
  } finally {
    await client.close();
  }
}

async function oplogFacts(client: MongoClient): Promise<ServerFacts['oplog']> {
  const oplog = client.db('local').collection<{ ts: Timestamp }>('oplog.rs');
  const edge = async (direction: 1 | -1) => {
    const entry = await oplog.find({}, { projection: { ts: 1 } }).sort({ $natural: direction }).limit(1).next();
    if (!entry) throw new Error('the oplog is empty');
    return entry.ts;
  };
  const [oldest, newest, sizes] = await Promise.all([
    edge(1),
    edge(-1),
    // Sizes say how far a young oplog can still grow; a user without the privilege for
    // $collStats gets the window without them.
    oplog
      .aggregate<{ storageStats: { size: number; maxSize: number } }>([{ $collStats: { storageStats: {} } }])
      .next()
      .catch(() => null),
  ]);
  const stats = sizes?.storageStats;
  return {
    oldest,
    newest,
    ...(stats && typeof stats.size === 'number' && typeof stats.maxSize === 'number'
      ? { usedBytes: Number(stats.size), maxBytes: Number(stats.maxSize) }
      : {}),
  };
}

function loopView(
  destination: ServerSpec,
  source: ServerSpec | undefined,
  config: SourceConfig,
  facts: ServerFacts,
  sourceFacts: ServerFacts | { error: string } | undefined,
): LoopView {
  const record = config.status;
  const warnings: string[] = [];
  const sourceName = source?.name ?? config.sourceId;
  let state: LinkState;
  let run: RunView | null = null;
  if (!record) {
    // A checkpoint without a record: run by a version of mmm that recorded none.
    state = config.checkpoint ? 'stopped' : 'never started';
  } else {
    const age = Math.max(0, (facts.localTime.getTime() - record.heartbeat.getTime()) / 1000);
    run = {
      host: record.host,
      pid: record.pid,
      since: iso(record.since),
      heartbeat: iso(record.heartbeat),
      heartbeatAgeSeconds: round(age, 1),
      recordedState: record.state,
    };
    state = record.state === 'failed' ? 'error' : record.state;
    if ((state === 'running' || state === 'retrying') && age > STALE_HEARTBEATS * record.every + STALE_SLACK_SECONDS) {
      warnings.push(
        `the run (${record.host}, pid ${record.pid}) recorded ${record.state} but nothing since ${Math.round(age)} s: ` +
          'it ended without stopping cleanly',
      );
      state = 'stopped';
    }
  }
  const checkpoint = config.checkpoint;
  let lagSeconds: number | null = null;
  if (!source) {
    warnings.push(`the topology names no server with id ${config.sourceId}: run does not follow these links`);
  } else if (!sourceFacts || 'error' in sourceFacts) {
    warnings.push(`${source.name} is unreachable: lag and oplog window unknown`);
  } else if (checkpoint) {
    const oplog = sourceFacts.oplog;
    lagSeconds = Math.max(0, oplog.newest.t - checkpoint.t);
    const risk = checkpointRisk(checkpoint, oplog);
    if (risk.kind === 'lost') {
      warnings.push(`the checkpoint is older than ${source.name}'s oldest oplog entry: the changes in between are lost to mmm`);
    } else if (risk.kind === 'close') {
      warnings.push(
        `the checkpoint falls out of ${source.name}'s oplog in about ${hours(risk.secondsLeft)} ` +
          `at its write rate so far (the oplog holds about ${hours(risk.fullWindowSeconds)}): replication must catch up`,
      );
    }
  }
  const recorded = new Set(record?.links.map((l) => `${l.src}\0${l.dst}`));
  const links = config.links.map(({ dst, src, ops, created, copying }): LinkView => {
    const copy = copying && facts.copies.find((c) => c.source === config.sourceId && c.src === src && c.dst === dst);
    if (copying) return { dst, src, ops, state: 'copying', ...(copy && { copy: copyView(copy, facts.localTime) }) };
    // A link added after the run started that it does not follow yet (it picks links up within seconds).
    const notRun = record && !recorded.has(`${src}\0${dst}`) && created > record.since;
    return { dst, src, ops, state: notRun ? 'never started' : state };
  });
  return {
    destination: destination.name,
    source: sourceName,
    sourceId: config.sourceId,
    state,
    error: record?.error && (state === 'error' || state === 'retrying') ? { message: record.error.message, at: iso(record.error.at) } : null,
    checkpoint: checkpoint ? position(checkpoint) : null,
    lagSeconds,
    applied: record ? { ...record.applied } : null,
    missed: record ? record.missed : null,
    refused: record ? record.refused : null,
    conflicts: facts.conflicts ? (facts.conflicts.get(config.sourceId) ?? 0) : null,
    run,
    warnings,
    notReplicated: (record?.warnings ?? []).map(({ command, ns, message, at }) => ({ command, ns, message, at: iso(at) })),
    links,
  };
}

export type CheckpointRisk =
  | { kind: 'lost' }
  | { kind: 'close'; secondsLeft: number; fullWindowSeconds: number }
  | { kind: 'safe' };

/**
 * Whether the checkpoint has fallen out of the source's oplog, or soon will. The oplog holds a
 * window of time that depends on the write rate; until it is full (`usedBytes` < `maxBytes`) it
 * will hold more than it does now, in proportion. At the write rate so far, the entry at the
 * checkpoint is overwritten when it is as old as that full window: warn when that is less than
 * OPLOG_WARNING_FRACTION of the full window away.
 */
export function checkpointRisk(
  checkpoint: Timestamp,
  oplog: { oldest: Timestamp; newest: Timestamp; usedBytes?: number; maxBytes?: number },
): CheckpointRisk {
  if (checkpoint.lessThan(oplog.oldest)) return { kind: 'lost' };
  const window = oplog.newest.t - oplog.oldest.t;
  if (window <= 0) return { kind: 'safe' };
  const { usedBytes, maxBytes } = oplog;
  const fill = usedBytes && maxBytes ? Math.min(1, usedBytes / maxBytes) : 1;
  const fullWindowSeconds = window / fill;
  const secondsLeft = fullWindowSeconds - Math.max(0, oplog.newest.t - checkpoint.t);
  if (secondsLeft < OPLOG_WARNING_FRACTION * fullWindowSeconds) {
    return { kind: 'close', secondsLeft: Math.max(0, secondsLeft), fullWindowSeconds };
  }
  return { kind: 'safe' };
}

function oplogView(oplog: ServerFacts['oplog']): OplogView {
  const mb = (bytes: number | undefined) => (bytes === undefined ? null : round(bytes / 2 ** 20, 2));
  return {
    oldest: position(oplog.oldest),
    newest: position(oplog.newest),
    windowHours: round((oplog.newest.t - oplog.oldest.t) / 3600, 3),
    usedMB: mb(oplog.usedBytes),
    sizeMB: mb(oplog.maxBytes),
  };
}

export function position(ts: Timestamp): PositionView {
  return { t: ts.t, i: ts.i, time: iso(new Date(ts.t * 1000)) };
}

/** ISO 8601 in UTC, to the second. */
export function iso(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

function hours(seconds: number): string {
  return seconds < 3600 ? `${Math.round(seconds / 60)} min` : `${round(seconds / 3600, 1)} h`;
}

function round(value: number, digits: number): number {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}

/**
 * The loops of a destination that cannot be reached, from the links status last read there:
 * state `unknown`, with why; none when this machine never read them.
 */
function unknownLoops(destination: ServerSpec, why: string, cached: CachedLinks | undefined, topology: Topology, now: Date): LoopView[] {
  if (!cached) return [];
  return cached.sources.map(({ sourceId, links }) => ({
    destination: destination.name,
    source: topology.byId(sourceId)?.name ?? sourceId,
    sourceId,
    state: 'unknown',
    error: { message: why, at: iso(now) },
    checkpoint: null,
    lagSeconds: null,
    applied: null,
    missed: null,
    refused: null,
    conflicts: null,
    run: null,
    warnings: [`the links as this machine last read them, at ${iso(cached.seen)}`],
    notReplicated: [],
    links: links.map(({ dst, src, ops }) => ({ dst, src, ops, state: 'unknown' })),
  }));
}
