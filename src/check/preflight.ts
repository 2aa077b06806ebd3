// `mmm check`, and the part of it `run` does at start: a topology and its links checked against
// the servers, one finding per fact, each `ok`, a `warning`, or a `failure` (something that would
// make `run` fail, or a link stop). Per server: reachable and a replica set member, its MongoDB
// version, the privileges mmm needs there (./privileges.ts), whether a destination acknowledges
// the write concern (./write-concern.ts); then each source's oplog at its current write rate
// and each loop's headroom in it (./oplog-headroom.ts); then the servers' clocks.

import type { MongoClient, Timestamp, W } from 'mongodb';
import { metadataStoreOptions, ReplicationConfigStore, CONFIG_STORE_DEFAULTS, type SourceConfig } from '../config/store.ts';
import type { ServerSpec, Topology } from '../topology.ts';
import { hasWayBack, type LinkEdge } from '../conflict/scope.ts';
import { describeMissing, describeUnauthorized, grantedPrivileges, mayAdvanceClock, missingPrivileges, requiredPrivileges } from './privileges.ts';
import { hoursText, measureOplog, type OplogHeadroom } from './oplog-headroom.ts';
import { describeWriteConcern, probeWriteConcern } from './write-concern.ts';

export type FindingLevel = 'ok' | 'warning' | 'failure';
export type CheckName = 'server' | 'version' | 'privileges' | 'write-concern' | 'oplog' | 'links' | 'clock';
const CHECK_ORDER: readonly CheckName[] = ['server', 'version', 'privileges', 'write-concern', 'oplog', 'links', 'clock'];

export interface Finding {
  level: FindingLevel;
  /** The server it is about; null for one about all of them (the clocks). */
  server: string | null;
  check: CheckName;
  message: string;
}

export interface PreflightOptions {
  topology: Topology;
  /** Opens a client (throws ServerError when it cannot); the check closes what it opened. */
  connect: (server: ServerSpec) => Promise<MongoClient>;
  writeConcern: W;
  /** How long a destination may take to acknowledge the write concern probe. */
  writeConcernTimeoutMS: number;
  /** Only the checks that would make `run` fail (no oplog, version or clock findings). */
  runOnly?: boolean;
  /** Only this destination (by name) and its sources, as `run -s` replicates. */
  only?: string;
  /** Conflicts are resolved (`run --conflicts` is not off): sources of links with a way back need their pre-images. */
  resolveConflicts?: boolean;
  /** What becomes of each server's client once checked; by default it is closed. */
  release?: (server: ServerSpec, client: MongoClient) => Promise<void>;
  now?: () => number;
}

/** The oldest MongoDB mmm is tested with; its oplog formats are those of 6.0 and later. */
const OLDEST_SUPPORTED_MAJOR = 6;
/** Clocks further apart than this make the lag in logs and metrics misleading. */
const CLOCK_SKEW_WARNING_SECONDS = 2;
/** Warn when a full oplog holds less than this at the current write rate. */
const OPLOG_WARNING_HOURS = 24;
/** Warn when a loop's checkpoint is this close (a fraction of the full window) to falling out. */
const HEADROOM_WARNING_FRACTION = 0.2;

interface ServerFacts {
  client: MongoClient;
  setName: string;
  members: number;
  /** The server's clock minus this machine's, in ms, at the middle of the hello round trip. */
  clockOffsetMs: number;
  /** Links into this server, by source; undefined when they could not be read. */
  sources?: SourceConfig[];
}

export async function preflight(options: PreflightOptions): Promise<Finding[]> {
  const { topology } = options;
  const now = options.now ?? Date.now;
  const findings: Finding[] = [];
  const add = (level: FindingLevel, server: string | null, check: CheckName, message: string) =>
    findings.push({ level, server, check, message });

  const onlyServer = options.only === undefined ? undefined : topology.byName(options.only);
  const destinations = onlyServer ? [onlyServer] : topology.servers;
  const facts = new Map<string, ServerFacts>();
  try {
    // Destinations first: their links say which sources `run -s` needs.
    await reachAll(destinations);
    const involved = onlyServer
      ? [onlyServer, ...topology.servers.filter((s) => facts.get(onlyServer.id)?.sources?.some((c) => c.sourceId === s.id && c.links.length > 0))]
      : topology.servers;
    await reachAll(involved.filter((s) => !destinations.includes(s)));
    await Promise.all(
      involved.map((server) => {
        const f = facts.get(server.id);
        return f ? checkServer(server, f, destinations.includes(server)) : undefined;
      }),
    );
    if (!options.runOnly) {
      await checkOplogs(involved);
      checkClocks(involved);
    }
    // Per server in the topology's order, its checks in CHECK_ORDER; the clocks last.
    const rank = (f: Finding) => (f.server === null ? topology.servers.length : topology.servers.findIndex((s) => s.name === f.server));
    return findings.sort((a, b) => rank(a) - rank(b) || CHECK_ORDER.indexOf(a.check) - CHECK_ORDER.indexOf(b.check));
  } finally {
    const release = options.release ?? ((_server: ServerSpec, client: MongoClient) => client.close());
    await Promise.all([...facts].map(([id, f]) => release(topology.byId(id)!, f.client)));
  }

  /** Reaches every server at once; throws (for `run`) only once all have answered or failed. */
  async function reachAll(servers: readonly ServerSpec[]): Promise<void> {
    const results = await Promise.allSettled(servers.map(reach));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  async function reach(server: ServerSpec): Promise<void> {
    let client: MongoClient;
    try {
      client = await options.connect(server);
    } catch (err) {
      // `run` stops on it as it always did, with the connection's own one-line error.
      if (options.runOnly) throw err;
      // `server_a (mongodb://...): unreachable ...`, as `server_a: mongodb://...: unreachable ...`.
      const message = (err as Error).message;
      const prefix = `${server.name} (`;
      add('failure', server.name, 'server', message.startsWith(prefix) ? message.slice(prefix.length).replace('): ', ': ') : message);
      return;
    }
    const sent = now();
    let hello;
    try {
      hello = await client.db('admin').command({ hello: 1 });
    } catch (err) {
      await client.close();
      add('failure', server.name, 'server', `lost at once: ${(err as Error).message}`);
      return;
    }
    const received = now();
    const f: ServerFacts = {
      client,
      setName: String(hello.setName),
      members: ((hello.hosts as string[] | undefined)?.length ?? 0) + ((hello.passives as string[] | undefined)?.length ?? 0),
      clockOffsetMs: (hello.localTime as Date).getTime() - (sent + received) / 2,
    };
    facts.set(server.id, f);
    try {
      f.sources = await new ReplicationConfigStore(client, metadataStoreOptions(server)).sources();
    } catch (err) {
      // Reported by the privileges check when it is one; anything else is a finding of its own.
      if (!describeUnauthorized(err)) add('failure', server.name, 'links', `cannot read its links: ${(err as Error).message}`);
    }
  }

  async function checkServer(server: ServerSpec, f: ServerFacts, isDestination: boolean): Promise<void> {
    const { client } = f;
    if (!options.runOnly) {
      const version = String((await client.db('admin').command({ buildInfo: 1 })).version);
      add('ok', server.name, 'server', `reachable, member of replica set ${f.setName} (${f.members} data-bearing member${f.members === 1 ? '' : 's'})`);
      const major = Number.parseInt(version, 10);
      add(
        major >= OLDEST_SUPPORTED_MAJOR ? 'ok' : 'warning',
        server.name,
        'version',
        major >= OLDEST_SUPPORTED_MAJOR ? `MongoDB ${version}` : `MongoDB ${version}: mmm is made for 6.0 and later; older oplog formats are untested`,
      );
    }
    const links = isDestination ? (f.sources ?? []).flatMap((c) => c.links) : [];
    const required = requiredPrivileges({
      // `run -s X` writes no metadata on X's sources; every other command may on any server.
      ...(isDestination || !options.runOnly ? { metadataDb: server.metadataDb ?? CONFIG_STORE_DEFAULTS.database } : {}),
      destinationNamespaces: links.map((l) => l.dst),
      preImageNamespaces: options.resolveConflicts === false ? [] : preImageNamespaces(server),
    });
    const grants = await grantedPrivileges(client);
    const missing = missingPrivileges(grants, required);
    const user = grants.kind === 'unrestricted' ? '' : grants.user === null ? 'no user logged in' : `user ${grants.user}`;
    if (missing.length > 0) {
      add('failure', server.name, 'privileges', `${user} lacks ${describeMissing(missing)}`);
    } else if (!options.runOnly) {
      const what = links.length > 0 ? 'as a source and as the destination of its links' : 'as a source';
      add('ok', server.name, 'privileges', user ? `${user} has the privileges mmm needs ${what}` : 'the server enforces no access control');
    }
    if (links.length > 0 && options.resolveConflicts !== false && !mayAdvanceClock(grants)) {
      add(
        'warning',
        server.name,
        'privileges',
        `${user} may not advance the cluster time (advanceClusterTime): writes made here after receiving one are timed by this server's clock alone, and can lose to it (README, "Privileges")`,
      );
    }
    if (links.length > 0) {
      const verdict = await probeWriteConcern(client, options.writeConcern, options.writeConcernTimeoutMS);
      const level = verdict.kind === 'ok' ? 'ok' : verdict.kind === 'impossible' ? 'failure' : 'warning';
      if (!(options.runOnly && level === 'ok')) add(level, server.name, 'write-concern', describeWriteConcern(options.writeConcern, verdict));
    }
  }

  /**
   * What `server` is the source or the destination of for links that resolve conflicts (those
   * run here), from the links of every server reached (../conflict/scope.ts: an unreached one
   * may give a way back).
   */
  function preImageNamespaces(server: ServerSpec): string[] {
    const edges: LinkEdge[] = [];
    for (const [id, f] of facts) {
      for (const config of f.sources ?? []) for (const l of config.links) edges.push({ source: config.sourceId, destination: id, src: l.src, dst: l.dst, ops: l.ops });
    }
    const complete = topology.servers.every((s) => facts.get(s.id)?.sources !== undefined);
    const wayBack = hasWayBack(edges, complete);
    const run = edges.filter((e) => destinations.some((d) => d.id === e.destination)).filter(wayBack);
    // As a destination too: an insert meeting no document is checked against its deletes.
    return [...run.filter((e) => e.source === server.id).map((e) => e.src), ...run.filter((e) => e.destination === server.id).map((e) => e.dst)];
  }

  async function checkOplogs(involved: readonly ServerSpec[]): Promise<void> {
    const oplogs = new Map<string, OplogHeadroom>();
    for (const server of involved) {
      const f = facts.get(server.id);
      if (!f) continue;
      try {
        const oplog = await measureOplog(f.client);
        oplogs.set(server.id, oplog);
        add(...oplogFinding(server, oplog));
      } catch (err) {
        // A privilege missing is the privileges check's finding.
        if (!describeUnauthorized(err)) add('failure', server.name, 'oplog', `cannot read the oplog: ${(err as Error).message}`);
      }
    }
    for (const destination of involved) {
      const configs = facts.get(destination.id)?.sources ?? [];
      for (const config of configs) {
        if (config.links.length === 0) continue;
        const source = topology.byId(config.sourceId);
        const count = `${config.links.length} link${config.links.length === 1 ? '' : 's'}`;
        const name = `${count} from ${source?.name ?? config.sourceId}`;
        if (!source) {
          add('warning', destination.name, 'links', `${name}, a server the topology does not name: run does not follow them`);
          continue;
        }
        const oplog = oplogs.get(source.id);
        if (!oplog) continue; // the source's own findings say why
        add(...loopFinding(destination, name, config.checkpoint, oplog));
      }
    }
  }

  function checkClocks(involved: readonly ServerSpec[]): void {
    const offsets = involved.flatMap((s) => {
      const f = facts.get(s.id);
      return f ? [{ name: s.name, seconds: f.clockOffsetMs / 1000 }] : [];
    });
    if (offsets.length === 0) return;
    const sorted = [...offsets].sort((a, b) => a.seconds - b.seconds);
    const spread = sorted[sorted.length - 1]!.seconds - sorted[0]!.seconds;
    const each = offsets.map((o) => `${o.name} ${o.seconds >= 0 ? '+' : ''}${o.seconds.toFixed(1)} s`).join(', ');
    const level = spread > CLOCK_SKEW_WARNING_SECONDS ? 'warning' : 'ok';
    const note = level === 'ok' ? '' : ': lag in logs and metrics compares clocks (status does not)';
    add(level, null, 'clock', `clocks ${spread.toFixed(1)} s apart (against this machine: ${each})${note}`);
  }
}

function oplogFinding(server: ServerSpec, oplog: OplogHeadroom): [FindingLevel, string, CheckName, string] {
  const rate = `${oplog.entriesPerSecond.toFixed(1)} entries/s${oplog.bytesPerSecond === null ? '' : `, ${(oplog.bytesPerSecond / 1024).toFixed(1)} KB/s`}`;
  if (oplog.young) {
    return ['ok', server.name, 'oplog', `oplog: too young to measure its write rate (${oplog.newest.t - oplog.oldest.t} s of entries); \`mmm check\` tells its window once it has some history`];
  }
  if (oplog.fullWindowSeconds === null) {
    return ['warning', server.name, 'oplog', `oplog holds ${hoursText(oplog.newest.t - oplog.oldest.t)} (${rate}); its size is not known (no privilege for $collStats)`];
  }
  const hours = oplog.fullWindowSeconds / 3600;
  const level = hours < OPLOG_WARNING_HOURS ? 'warning' : 'ok';
  const advice = level === 'ok' ? '' : `: under ${OPLOG_WARNING_HOURS} h, a longer stop loses changes (replSetResizeOplog makes it larger)`;
  const size = oplog.maxBytes === null ? '' : ` of ${Math.round(oplog.maxBytes / 2 ** 20)} MB`;
  return [level, server.name, 'oplog', `oplog${size} holds ${hoursText(oplog.fullWindowSeconds)} at the current write rate (${rate})${advice}`];
}

function loopFinding(
  destination: ServerSpec,
  name: string,
  checkpoint: Timestamp | undefined,
  oplog: OplogHeadroom,
): [FindingLevel, string, CheckName, string] {
  if (!checkpoint) return ['ok', destination.name, 'links', `${name}, never run (the first run starts at the source's newest entry)`];
  if (checkpoint.lessThan(oplog.oldest)) {
    return [
      'failure',
      destination.name,
      'links',
      `${name}: the checkpoint Timestamp(${checkpoint.t}, ${checkpoint.i}) is older than the source's oldest oplog entry: run would stop these links (see reset-checkpoint)`,
    ];
  }
  const behind = Math.max(0, oplog.newest.t - checkpoint.t);
  if (oplog.fullWindowSeconds === null || oplog.young) return ['ok', destination.name, 'links', `${name}, ${hoursText(behind)} behind`];
  const headroom = oplog.fullWindowSeconds - behind;
  const level = headroom < HEADROOM_WARNING_FRACTION * oplog.fullWindowSeconds ? 'warning' : 'ok';
  return [level, destination.name, 'links', `${name}, ${hoursText(behind)} behind, ${hoursText(headroom)} of headroom in the source's oplog at its current write rate`];
}

/** The first failure, as the one line `run` stops with; undefined when nothing would fail. */
export function firstFailure(findings: readonly Finding[]): string | undefined {
  const failures = findings.filter((f) => f.level === 'failure');
  if (failures.length === 0) return undefined;
  const [first] = failures;
  const more = failures.length > 1 ? ` (and ${failures.length - 1} more: see \`mmm check\`)` : '';
  return `${first!.server ? `${first!.server}: ` : ''}${first!.message}${more}`;
}
