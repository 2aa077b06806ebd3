// The benchmark's verify section: how fast `mmm verify` compares an equal link.
//
// The same documents (about 1 KB each, ./workloads.ts) are written to A and to B, B's tagged as
// a link writes them (`__mmm`), and linked A -> B. Then timed, on that link:
//   - the real CLI, `node bin/mmm -c <topology> verify --src ... --dst ...`, start-up included;
//   - the comparison alone, in this process (src/verify/links.ts, as the CLI calls it), with
//     the CPU it took here and on both mongods; and with other numbers of ranges in parallel,
//     to show why the default is what it is.
// The link is removed and the collections dropped afterwards.

import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BSON, type Document, type MongoClient } from 'mongodb';
import { ReplicationConfigStore } from '../src/config/store.ts';
import { Topology } from '../src/topology.ts';
import { allLinks, verifyLinks, type Connections } from '../src/verify/links.ts';
import { SCAN_DEFAULTS } from '../src/verify/scan.ts';
import { VERIFY_DEFAULTS } from '../src/verify/link.ts';
import { cpuSecondsOf } from './mmm-process.ts';
import { document, random } from './workloads.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const DB = 'bench';
const COLL = 'verify';
const NS = `${DB}.${COLL}`;

export interface VerifyBenchServers {
  ca: MongoClient;
  cb: MongoClient;
  idA: string;
  idB: string;
  /** The topology file naming A server_a and B server_b. */
  config: string;
}

export interface VerifyTiming {
  documents: number;
  megabytes: number;
  /** The CLI, start-up included. */
  cliSeconds: number;
  cliDocsPerSec: number;
  /** The comparison alone, with the default settings. */
  seconds: number;
  docsPerSec: number;
  /** CPU during the comparison alone, in shares of one core. */
  verifyCpuShare: number;
  mongodCpuShare: number;
  /** Docs/s of the comparison alone with 1, 2 and 4 ranges in parallel. */
  byParallel: Record<string, number>;
}

export async function verifyTiming(s: VerifyBenchServers, documents: number, log: (line: string) => void): Promise<VerifyTiming> {
  const megabytes = await prepare(s, documents);
  const store = new ReplicationConfigStore(s.cb);
  await store.addLink(s.idA, { src: NS, dst: NS, ops: 'iud' });
  try {
    const cliSeconds = await timeCli(s.config, documents);
    log(`verify: the CLI compared ${documents} documents in ${cliSeconds.toFixed(2)} s`);
    const pids = await Promise.all([s.ca, s.cb].map(async (c) => (await c.db('admin').command({ serverStatus: 1 })).pid as number));
    const mongodCpu = () => pids.reduce((sum, pid) => sum + cpuSecondsOf(pid), 0);
    await timeEngine(s, documents, SCAN_DEFAULTS.parallel); // warm-up: connections, JIT, the servers' caches
    const m0 = mongodCpu();
    const c0 = process.cpuUsage();
    const seconds = await timeEngine(s, documents, SCAN_DEFAULTS.parallel);
    const cpu = process.cpuUsage(c0);
    const mongodCpuShare = (mongodCpu() - m0) / seconds;
    const byParallel: Record<string, number> = {};
    for (const parallel of [1, 2, 4]) byParallel[parallel] = documents / (await timeEngine(s, documents, parallel));
    return {
      documents,
      megabytes,
      cliSeconds,
      cliDocsPerSec: documents / cliSeconds,
      seconds,
      docsPerSec: documents / seconds,
      verifyCpuShare: (cpu.user + cpu.system) / 1e6 / seconds,
      mongodCpuShare,
      byParallel,
    };
  } finally {
    await store.removeLink(s.idA, NS, NS);
    await Promise.all([s.ca, s.cb].map((c) => c.db(DB).collection(COLL).drop().catch(() => undefined)));
  }
}

/** The documents on A, and on B as a link writes them; returns their size in MB. */
async function prepare(s: VerifyBenchServers, documents: number): Promise<number> {
  const rnd = random(42);
  let bytes = 0;
  for (const c of [s.ca, s.cb]) await c.db(DB).collection(COLL).drop().catch(() => undefined);
  for (let start = 0; start < documents; start += 1_000) {
    const docs: Document[] = [];
    for (let id = start; id < Math.min(start + 1_000, documents); id++) docs.push(document(id, rnd));
    bytes += docs.reduce((sum, d) => sum + BSON.calculateObjectSize(d), 0);
    const tagged = docs.map((d) => ({ ...d, __mmm: `${s.idA}:1796000000:1` }));
    await Promise.all([
      s.ca.db(DB).collection(COLL).insertMany(docs, { ordered: false, writeConcern: { w: 1 } }),
      s.cb.db(DB).collection(COLL).insertMany(tagged, { ordered: false, writeConcern: { w: 1 } }),
    ]);
  }
  return bytes / 1e6;
}

async function timeCli(config: string, documents: number): Promise<number> {
  const t0 = performance.now();
  const child = spawn(process.execPath, [path.join(root, 'bin', 'mmm'), '-c', config, 'verify', '--src', `server_a/${NS}`, '--dst', `server_b/${NS}`], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  const seconds = (performance.now() - t0) / 1000;
  const expected = `server_b/${NS} <= server_a/${NS}: equal (${documents} documents)\n`;
  if (code !== 0 || out !== expected) throw new Error(`verify exited with ${code}: ${out}`);
  return seconds;
}

async function timeEngine(s: VerifyBenchServers, documents: number, parallel: number): Promise<number> {
  const topology = new Topology([
    { name: 'server_a', id: s.idA, uri: '' },
    { name: 'server_b', id: s.idB, uri: '' },
  ]);
  const clients = new Map([['server_a', s.ca], ['server_b', s.cb]]);
  const connections: Connections = { client: (server) => clients.get(server.name)!, store: (server) => new ReplicationConfigStore(clients.get(server.name)!) };
  const links = (await allLinks(topology, connections)).filter((l) => l.link.src === NS);
  const t0 = performance.now();
  const report = await verifyLinks(links, connections, { verify: { ...VERIFY_DEFAULTS, scan: { ...SCAN_DEFAULTS, parallel } } });
  const seconds = (performance.now() - t0) / 1000;
  const [link] = report.links;
  if (!report.equal || link?.documents.source !== documents) throw new Error(`verify found the link not equal: ${JSON.stringify(link)}`);
  return seconds;
}
