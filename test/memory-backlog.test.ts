// Memory of `mmm run` catching up a backlog of large documents: read-ahead and apply batches are
// bounded in bytes as well as in entries, so 1,000 documents of 1 MB (a gigabyte of oplog) go
// through a bounded amount of memory. The real bin/mmm as a child process; its peak resident
// set (VmHWM in /proc/<pid>/status) is read once it has caught up.
import assert from 'node:assert/strict';
import { createCipheriv, createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { BSON, type Collection, type MongoClient, type Timestamp } from 'mongodb';
import { startReplicaSets, type ReplicaSet } from '../scripts/replica-sets.ts';
import { ReplicationConfigStore } from '../src/config/store.ts';
import { ID_A, ID_B, runCli, writeTopology } from './support/cli.ts';
import { eventually } from './support/replication.ts';
import { RunProcess } from './support/run-process.ts';

const DOCUMENTS = 1_000;
const DOCUMENT_BYTES = 1024 * 1024;
/** Documents per insertMany: 16 MB, a command's worth. */
const CHUNK = 16;
const PEAK_LIMIT_MB = 300;

let sets: ReplicaSet[] = [];
let clients: MongoClient[] = [];
let dir: string;
let config: string;

before(async () => {
  // The source's oplog must hold the whole backlog (a gigabyte) and then some.
  sets = await startReplicaSets(2, { oplogSizeMB: 2_048 });
  clients = sets.map((s) => s.client());
  dir = mkdtempSync(path.join(os.tmpdir(), 'mmm-memory-'));
  config = writeTopology(path.join(dir, 'test.yml'), {
    server_a: { id: ID_A, uri: sets[0]!.uri },
    server_b: { id: ID_B, uri: sets[1]!.uri },
  });
});

after(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await Promise.all(sets.map((s) => s.destroy()));
  if (dir) rmSync(dir, { recursive: true, force: true });
});

interface BigDoc {
  _id: number;
  payload: string;
}

/**
 * Document `n`, exactly DOCUMENT_BYTES as BSON: a payload of base64 text from an AES-CTR
 * keystream (fixed key, `n` as the counter block), so every document differs and none
 * compresses to nothing, yet each run writes the same ones.
 */
function bigDoc(n: number): BigDoc {
  const overhead = BSON.calculateObjectSize({ _id: n, payload: '' });
  const iv = Buffer.alloc(16);
  iv.writeUInt32BE(n, 0);
  const stream = createCipheriv('aes-128-ctr', Buffer.alloc(16, 7), iv).update(Buffer.alloc(DOCUMENT_BYTES));
  return { _id: n, payload: stream.toString('base64').slice(0, DOCUMENT_BYTES - overhead) };
}

/** Peak resident set of process `pid` so far, in MB (kernel's VmHWM). */
function peakRssMB(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('VmHWM:'));
  return Number(/(\d+)/.exec(line!)![1]) / 1024;
}

async function newest(client: MongoClient): Promise<Timestamp> {
  const entry = await client.db('local').collection('oplog.rs').find().sort({ $natural: -1 }).limit(1).next();
  return entry!.ts as Timestamp;
}

/** The collection's documents without `__mmm`, by `_id`, as BSON: their count and a SHA-256 of them all. */
async function digest(coll: Collection<BigDoc>): Promise<{ count: number; sha256: string }> {
  const hash = createHash('sha256');
  let count = 0;
  const cursor = coll.find({}, { projection: { __mmm: 0 }, sort: { _id: 1 }, raw: true });
  for await (const bytes of cursor as AsyncIterable<unknown> as AsyncIterable<Uint8Array>) {
    hash.update(bytes);
    count++;
  }
  return { count, sha256: hash.digest('hex') };
}

test(`a backlog of ${DOCUMENTS} documents of 1 MB catches up under ${PEAK_LIMIT_MB} MB of peak RSS`, { timeout: 15 * 60_000 }, async () => {
  const source = clients[0]!.db('test').collection<BigDoc>('big');
  const destination = clients[1]!.db('test').collection<BigDoc>('big');
  const link = await runCli(['-c', config, 'replicate', '--src=server_a/test.big', '--dst=server_b/test.big']);
  assert.equal(link.code, 0, link.stderr);

  // A first run records the checkpoint; what is written after it stops is the backlog.
  const first = new RunProcess(config);
  try {
    await first.waitForLog('link started');
    const idleMB = peakRssMB(first.child.pid!);
    console.log(`peak RSS of an idle mmm run (start-up included): ${idleMB.toFixed(0)} MB`);
  } finally {
    assert.equal(await first.stop('SIGINT'), 0, first.stderr);
  }

  assert.equal(BSON.calculateObjectSize(bigDoc(0)), DOCUMENT_BYTES);
  for (let n = 0; n < DOCUMENTS; n += CHUNK) {
    const chunk = Array.from({ length: Math.min(CHUNK, DOCUMENTS - n) }, (_, i) => bigDoc(n + i));
    await source.insertMany(chunk, { ordered: true });
  }
  const last = await newest(clients[0]!);

  const run = new RunProcess(config);
  try {
    await run.waitForLog('link started');
    const store = new ReplicationConfigStore(clients[1]!);
    await eventually(
      `all ${DOCUMENTS} documents and the checkpoint at the source's newest entry`,
      async () => {
        if (run.child.exitCode !== null) throw new Error(`mmm run exited (${run.child.exitCode}):\n${run.stderr}`);
        const checkpoint = await store.checkpoint(ID_A);
        if (!checkpoint || checkpoint.lessThan(last)) return false;
        if ((await destination.estimatedDocumentCount()) !== DOCUMENTS) return false;
        return checkpoint.greaterThanOrEqual(await newest(clients[0]!));
      },
      10 * 60_000,
    );
    const peakMB = peakRssMB(run.child.pid!);
    console.log(`peak RSS of mmm run catching up ${DOCUMENTS} x 1 MB: ${peakMB.toFixed(0)} MB`);
    assert.ok(peakMB < PEAK_LIMIT_MB, `peak RSS ${peakMB.toFixed(0)} MB, over ${PEAK_LIMIT_MB} MB`);
  } finally {
    assert.equal(await run.stop('SIGINT'), 0, run.stderr);
  }

  const [want, got] = await Promise.all([digest(source), digest(destination)]);
  assert.equal(want.count, DOCUMENTS);
  assert.deepEqual(got, want);
});
