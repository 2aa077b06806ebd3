// `mmm conflicts` as data: the newest conflicts over all the servers (or some), from each one's
// `mmm.conflicts` (./conflict-records.ts). A conflict is kept where its version lost, so every
// server is read. Servers are named by their topology names, and a UUID the topology does not
// know is shown as is. Servers that cannot be reached are reported as such, the rest all the same.

import { BSON, type Document, type MongoClient } from 'mongodb';
import { describeUnauthorized } from '../check/privileges.ts';
import type { ServerSpec, Topology } from '../topology.ts';
import { newestConflicts, type StoredConflict, type StoredVersion } from './conflict-records.ts';
import { position, type PositionView } from './report.ts';

export const CONFLICTS_DEFAULTS = { limit: 20 } as const;

/** A version of the document: where and when it was written. */
export interface VersionView {
  /** The server the write was made on: its name, or its UUID when the topology does not name it. */
  origin: string;
  originId: string;
  /** Its time in the origin's oplog; null when older than the oplog (unknown). */
  ts: PositionView | null;
  /** Relaxed extended JSON; null when the version is no document (deleted, or absent). */
  doc: Document | null;
}

/** One conflict, as `mmm conflicts --json` prints it. */
export interface ConflictView {
  /** The record's own `_id` in `mmm.conflicts` (`{"$oid": ...}`). */
  _id: unknown;
  /** The server that keeps it: where the version lost. */
  server: string;
  serverId: string;
  /** When it was recorded: ISO 8601, UTC, to the millisecond. */
  at: string;
  /** The namespace on `server`, and the document's `_id` (relaxed extended JSON). */
  ns: string;
  id: unknown;
  /** The server whose oplog brought the winning write: the winner's origin, or a server relaying it. */
  source: string;
  sourceId: string;
  /** `lww`, or `prefer:<server>`. */
  policy: string;
  lost: VersionView;
  won: VersionView;
}

export interface ConflictsOptions {
  topology: Topology;
  /** The servers to read; all of the topology's by default. */
  servers?: readonly ServerSpec[];
  /** Opens a client (throws ServerError when it cannot); closed after use. */
  connect: (server: ServerSpec) => Promise<MongoClient>;
  /** How many to list, newest first, over all the servers read; CONFLICTS_DEFAULTS by default. */
  limit?: number;
}

export interface ConflictsReport {
  /** Newest first, at most `limit`. */
  conflicts: ConflictView[];
  /** How many the servers read keep in all: more than listed when the limit cut the list. */
  total: number;
  /** The names of the servers read, in topology order. */
  read: string[];
  /** The servers that could not be reached or read, with why (the message names the server). */
  unreadable: Array<{ server: string; error: string }>;
}

export async function collectConflicts(options: ConflictsOptions): Promise<ConflictsReport> {
  const { topology } = options;
  const servers = options.servers ?? topology.servers;
  const limit = options.limit ?? CONFLICTS_DEFAULTS.limit;
  const results = await Promise.all(servers.map((server) => readServer(server, limit, options.connect)));
  const report: ConflictsReport = { conflicts: [], total: 0, read: [], unreadable: [] };
  const found: Array<{ server: ServerSpec; stored: StoredConflict }> = [];
  servers.forEach((server, k) => {
    const result = results[k]!;
    if ('error' in result) {
      report.unreadable.push({ server: server.name, error: result.error });
      return;
    }
    report.read.push(server.name);
    report.total += result.total;
    for (const stored of result.newest) found.push({ server, stored });
  });
  // Each server gave its `limit` newest, so the newest `limit` of all are among them. Ties (the
  // same millisecond) go in a fixed order, so that a listing reads the same every time.
  found.sort(
    (a, b) =>
      b.stored.at.getTime() - a.stored.at.getTime() ||
      compare(a.server.name, b.server.name) ||
      compare(b.stored._id.toHexString(), a.stored._id.toHexString()),
  );
  report.conflicts = found.slice(0, limit).map(({ server, stored }) => conflictView(server, stored, topology));
  return report;
}

async function readServer(
  server: ServerSpec,
  limit: number,
  connect: ConflictsOptions['connect'],
): Promise<{ newest: StoredConflict[]; total: number } | { error: string }> {
  let client: MongoClient;
  try {
    client = await connect(server);
  } catch (err) {
    return { error: (err as Error).message };
  }
  try {
    return await newestConflicts(client, limit);
  } catch (err) {
    return { error: `${server.name}: ${describeUnauthorized(err) ?? (err as Error).message}` };
  } finally {
    await client.close();
  }
}

function conflictView(server: ServerSpec, stored: StoredConflict, topology: Topology): ConflictView {
  const name = (id: string) => topology.byId(id)?.name ?? id;
  const version = (v: StoredVersion): VersionView => ({
    origin: name(v.origin),
    originId: v.origin,
    ts: v.ts ? position(v.ts) : null,
    doc: v.doc ? (ejson(v.doc) as Document) : null,
  });
  const preferred = /^prefer:(.*)$/.exec(stored.policy)?.[1];
  return {
    _id: ejson(stored._id),
    server: server.name,
    serverId: server.id,
    at: stored.at.toISOString(),
    ns: stored.ns,
    id: ejson(stored.id),
    source: name(stored.source),
    sourceId: stored.source,
    policy: preferred === undefined ? stored.policy : `prefer:${name(preferred)}`,
    lost: version(stored.lost),
    won: version(stored.won),
  };
}

/** Relaxed extended JSON, as a value JSON.stringify prints. */
function ejson(value: unknown): unknown {
  return BSON.EJSON.serialize(value as never);
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
