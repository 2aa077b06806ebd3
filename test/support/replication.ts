// Test support for replication: a topology over throwaway replica sets, an in-process `run`
// that a test can stop, and a wait that knows when replication has settled.
import { setTimeout as sleep } from 'node:timers/promises';
import { MongoClient, type Document, type Timestamp } from 'mongodb';
import { v4 as uuidv4 } from 'uuid';
import { ReplicationConfigStore } from '../../src/config/store.ts';
import { createLogger, silentLogger, type Logger, type LogLevel } from '../../src/log.ts';
import { runReplication, type LoopReport } from '../../src/replicate/runner.ts';
import type { ReplicationSettings } from '../../src/replicate/settings.ts';
import { Topology, type ServerSpec } from '../../src/topology.ts';
import { startReplicaSets, type MongodOptions, type ReplicaSet } from '../../scripts/replica-sets.ts';

/** A document of a test collection: numbers and strings for `_id`s, any fields. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- arbitrary test documents
export type TestDoc = { _id: number | string; [field: string]: any };

/** Names servers server_a, server_b, ... with fresh UUIDs, one per replica set. */
function topologyOf(sets: readonly ReplicaSet[]): Topology {
  return new Topology(
    sets.map((set, k) => ({ name: `server_${String.fromCharCode(97 + k)}`, id: uuidv4(), uri: set.uri })),
  );
}

/** Replica sets named as a topology, with a client to each; `close` tears it all down. */
export interface Cluster {
  sets: ReplicaSet[];
  topology: Topology;
  clients: Map<string, MongoClient>;
  close(): Promise<void>;
}

export async function startCluster(count: number, options: MongodOptions = {}): Promise<Cluster> {
  const sets = await startReplicaSets(count, options);
  const topology = topologyOf(sets);
  const clients = clientsOf(topology);
  return {
    sets,
    topology,
    clients,
    close: async () => {
      await closeAll(clients);
      await Promise.all(sets.map((s) => s.destroy()));
    },
  };
}

/** Clients to each server of a topology, by name; close them with closeAll. */
function clientsOf(topology: Topology): Map<string, MongoClient> {
  return new Map(topology.servers.map((s) => [s.name, new MongoClient(s.uri)]));
}

async function closeAll(clients: Map<string, MongoClient>): Promise<void> {
  await Promise.all([...clients.values()].map((c) => c.close()));
}

/** Adds a link `src` -> `dst`, both written `server/db.coll`, as `mmm replicate` does. */
export async function addLink(topology: Topology, clients: Map<string, MongoClient>, src: string, dst: string, ops = 'iud') {
  const [srcServer, srcNs] = src.split(/\/(.*)/s) as [string, string];
  const [dstServer, dstNs] = dst.split(/\/(.*)/s) as [string, string];
  const store = new ReplicationConfigStore(clients.get(dstServer)!);
  await store.addLink(topology.byName(srcServer)!.id, { src: srcNs, dst: dstNs, ops });
}

export interface RunningMmm {
  /** Stops the run as SIGINT would, and returns how each loop ended. */
  stop(): Promise<LoopReport[]>;
  /** Resolves if the run ends by itself (every loop failed). */
  done: Promise<LoopReport[]>;
}

/** Starts `run` in this process, as the CLI does. */
export function startMmm(
  topology: Topology,
  options: { only?: string; settings?: Partial<ReplicationSettings>; logger?: Logger } = {},
): RunningMmm {
  const controller = new AbortController();
  const done = runReplication(
    {
      topology,
      // MMM_TEST_LOG=debug (or info, warn) shows what the run did, on stderr.
      logger: options.logger ?? (process.env.MMM_TEST_LOG ? createLogger(process.env.MMM_TEST_LOG as LogLevel) : silentLogger),
      connect: async (server: ServerSpec) => new MongoClient(server.uri, { serverSelectionTimeoutMS: 10_000 }).connect(),
      ...(options.only ? { only: options.only } : {}),
      ...(options.settings ? { settings: options.settings } : {}),
    },
    controller.signal,
  );
  return {
    done,
    stop: async () => {
      controller.abort();
      return done;
    },
  };
}

/** Polls `check` until it returns true, or fails after `timeoutMs` with `what`. */
export async function eventually(what: string, check: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

async function newest(client: MongoClient): Promise<Timestamp> {
  const entry = await client.db('local').collection('oplog.rs').find().sort({ $natural: -1 }).limit(1).next();
  return entry!.ts as Timestamp;
}

/**
 * Waits until replication has settled: every destination's checkpoint for every source it
 * reads has reached that source's newest oplog entry, and no server's oplog grew meanwhile
 * (an echo of a replicated write would have grown it).
 */
export async function settle(topology: Topology, clients: Map<string, MongoClient>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const before = new Map<string, Timestamp>();
    for (const s of topology.servers) before.set(s.id, await newest(clients.get(s.name)!));
    let caughtUp = true;
    for (const dst of topology.servers) {
      const store = new ReplicationConfigStore(clients.get(dst.name)!);
      for (const source of await store.sources()) {
        if (source.links.length === 0 || !before.has(source.sourceId)) continue;
        if (!source.checkpoint || source.checkpoint.lessThan(before.get(source.sourceId)!)) caughtUp = false;
      }
    }
    if (caughtUp) {
      let grew = false;
      for (const s of topology.servers) if (!(await newest(clients.get(s.name)!)).equals(before.get(s.id)!)) grew = true;
      if (!grew) return;
    }
    if (Date.now() > deadline) throw new Error('replication did not settle');
    await sleep(100);
  }
}

/**
 * The CRUD operations `client`'s server logged after `since` that `counted` keeps: plain
 * entries, and each operation inside an `applyOps` entry (a user's transaction, or the
 * transaction mmm applies a batch in).
 */
export async function loggedOperations(client: MongoClient, since: Timestamp, counted: (op: Document) => boolean): Promise<number> {
  const entries = await client.db('local').collection('oplog.rs').find({ ts: { $gt: since } }).toArray();
  const ops = entries.flatMap((e) => (Array.isArray(e.o?.applyOps) ? (e.o.applyOps as Document[]) : [e]));
  return ops.filter((op) => ['i', 'u', 'd'].includes(op.op as string) && counted(op)).length;
}
