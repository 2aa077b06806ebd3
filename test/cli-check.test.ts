// `mmm check` and the checks `run` makes at start, on real servers: good replica sets, a
// standalone mongod, a replica set with --auth whose users hold the README's minimum roles or
// less, an impossible write concern; and a password read from the environment.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { MongoClient } from 'mongodb';
import { startStandalone, type ReplicaSet, type Standalone } from '../scripts/replica-sets.ts';
import type { Finding } from '../src/check/preflight.ts';
import { ReplicationConfigStore } from '../src/config/store.ts';
import { ID_A, ID_B, runCli, startTwoServers, writeTopology, type TwoServers } from './support/cli.ts';
import { eventually } from './support/replication.ts';
import { RunProcess } from './support/run-process.ts';
import { startSecuredSet } from './support/secured-set.ts';

const ROOT_PASSWORD = 'r00t-never-shown';
/** A password with the characters that must be percent-encoded in a URI: given through the environment. */
const ENV_PASSWORD = 'p@ss/w:rd%40?#never-shown';

let two: TwoServers;
let secured: ReplicaSet;
let standalone: Standalone;
let admin: MongoClient;
let dir: string;

before(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'mmm-check-'));
  [two, secured, standalone] = await Promise.all([startTwoServers(), startSecuredSet(dir, { user: 'root', pwd: ROOT_PASSWORD }), startStandalone()]);
  admin = new MongoClient(securedUri('root', ROOT_PASSWORD));
  // The README's role for conflict detection: reading pre-images (no built-in role below root
  // grants it) and advancing the cluster time (no built-in role grants it).
  await admin.db('admin').command({
    createRole: 'mmmConflicts',
    privileges: [
      { resource: { db: 'config', collection: 'system.preimages' }, actions: ['find'] },
      { resource: { cluster: true }, actions: ['advanceClusterTime'] },
    ],
    roles: [],
  });
  // What a server of links that replicate back needs for conflict detection.
  const conflictRoles = [{ role: 'dbAdmin', db: 'test' }, { role: 'mmmConflicts', db: 'admin' }];
  const users: Array<[string, string, Array<{ role: string; db: string }>]> = [
    // The README's minimum roles for a server that is a source and a destination of test.*, both ways.
    ['minimal', 'minimal-pw', [{ role: 'readWrite', db: 'local' }, { role: 'readWrite', db: 'mmm' }, { role: 'readWrite', db: 'test' }, ...conflictRoles]],
    // Without the roles conflict detection needs: enough for `run --conflicts off`.
    ['unchecked', 'unchecked-pw', [{ role: 'readWrite', db: 'local' }, { role: 'readWrite', db: 'mmm' }, { role: 'readWrite', db: 'test' }]],
    // `read` on local: enough to read the oplog, not to keep links and checkpoints.
    ['reader', 'reader-pw', [{ role: 'read', db: 'local' }, { role: 'readWrite', db: 'mmm' }, { role: 'readWrite', db: 'test' }, ...conflictRoles]],
    // readWriteAnyDatabase does not cover local; and no role on mmm.
    ['anydb', 'anydb-pw', [{ role: 'readWriteAnyDatabase', db: 'admin' }]],
    ['from env', ENV_PASSWORD, [{ role: 'readWrite', db: 'local' }, { role: 'readWrite', db: 'mmm' }, { role: 'readWrite', db: 'test' }, ...conflictRoles]],
  ];
  for (const [user, pwd, roles] of users) await admin.db('admin').command({ createUser: user, pwd, roles });
});

after(async () => {
  await admin?.close();
  await Promise.all([two?.close(), secured?.destroy(), standalone?.destroy()]);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function securedUri(user: string, password?: string): string {
  const credentials = password === undefined ? encodeURIComponent(user) : `${encodeURIComponent(user)}:${encodeURIComponent(password)}`;
  return `mongodb://${credentials}@${secured.members[0]!.host}/?replicaSet=${secured.name}&authSource=admin`;
}

/** A topology file of the secured set as server_a, logged in as `user`, and two's server_b. */
function securedTopology(name: string, user: string, password: string): string {
  return writeTopology(path.join(dir, `${name}.yml`), {
    server_a: { id: ID_A, uri: securedUri(user, password) },
    server_b: { id: ID_B, uri: two.sets[1]!.uri },
  });
}

async function check(config: string, args: string[] = []): Promise<{ code: number | null; stdout: string; stderr: string; findings: Finding[] }> {
  const [text, json] = await Promise.all([runCli(['-c', config, 'check', ...args]), runCli(['-c', config, 'check', '--json', ...args])]);
  assert.equal(text.code, json.code, 'the same verdict as text and as JSON');
  const { ok, findings } = JSON.parse(json.stdout) as { ok: boolean; findings: Finding[] };
  assert.equal(ok, json.code === 0);
  // One line per finding, and a line that counts them.
  assert.equal(text.stdout.split('\n').length, findings.length + 2, text.stdout);
  return { ...text, findings };
}

const line = (f: Pick<Finding, 'level' | 'server' | 'message'>) => `${{ ok: 'ok', warning: 'warning', failure: 'FAILURE' }[f.level].padEnd(7)}  ${f.server}: ${f.message}`;

/** Links both ways between server_a and server_b: test.foo. */
async function linkBothWays(clients: { a: MongoClient; b: MongoClient }): Promise<void> {
  await new ReplicationConfigStore(clients.a).addLink(ID_B, { src: 'test.foo', dst: 'test.foo', ops: 'iud' });
  await new ReplicationConfigStore(clients.b).addLink(ID_A, { src: 'test.foo', dst: 'test.foo', ops: 'iud' });
}

describe('mmm check', { concurrency: false }, () => {
  before(() => linkBothWays({ a: two.clients[0]!, b: two.clients[1]! }));
  after(() => Promise.all(two.clients.map((c) => new ReplicationConfigStore(c).clear())));

  test('on good servers: every check passes, exit 0', async () => {
    const { code, stdout, stderr, findings } = await check(two.config);
    assert.equal(code, 0, stdout + stderr);
    assert.equal(stderr, '');
    assert.deepEqual(findings.filter((f) => f.level === 'failure'), []);
    for (const [k, server] of ['server_a', 'server_b'].entries()) {
      const mine = (check: string) => findings.filter((f) => f.server === server && f.check === check);
      assert.deepEqual(mine('server').map((f) => [f.level, f.message]), [['ok', `reachable, member of replica set ${two.sets[k]!.name} (1 data-bearing member)`]]);
      assert.match(mine('version')[0]!.message, /^MongoDB \d+\.\d+\.\d+/);
      assert.deepEqual(mine('privileges').map((f) => f.message), ['the server enforces no access control']);
      assert.deepEqual(mine('write-concern').map((f) => [f.level, f.message]), [['ok', '--write-concern majority: acknowledged']]);
      assert.equal(mine('oplog').length, 1);
      assert.notEqual(mine('oplog')[0]!.level, 'failure');
      const other = server === 'server_a' ? 'server_b' : 'server_a';
      assert.deepEqual(mine('links').map((f) => [f.level, f.message]), [['ok', `1 link from ${other}, never run (the first run starts at the source's newest entry)`]]);
    }
    const clock = findings.find((f) => f.check === 'clock')!;
    assert.equal(clock.server, null);
    assert.match(clock.message, /^clocks \d+\.\d s apart \(against this machine: server_a [+-]\d+\.\d s, server_b [+-]\d+\.\d s\)/);
    assert.ok(stdout.includes(`${line({ level: 'ok', server: 'server_a', message: '--write-concern majority: acknowledged' })}\n`), stdout);
    assert.match(stdout, /^0 failures, \d warnings?\n$/m);
  });

  test('an impossible write concern: check fails on it, and run refuses it in one line before writing', async () => {
    const { code, stdout, findings } = await check(two.config, ['--write-concern', '7']);
    assert.equal(code, 1);
    const impossible = (server: string) => ({
      level: 'failure' as const,
      server,
      check: 'write-concern',
      message: "--write-concern 7 cannot be satisfied: Not enough data-bearing nodes (the replica set has 1 data-bearing member; use 'majority' or a number up to that)",
    });
    assert.deepEqual(findings.filter((f) => f.check === 'write-concern'), [impossible('server_a'), impossible('server_b')]);
    assert.ok(stdout.endsWith('2 failures, 0 warnings: something would fail\n') || /2 failures, \d warnings?: something would fail\n$/.test(stdout), stdout);

    const before = await Promise.all(two.clients.map((c) => new ReplicationConfigStore(c).sources()));
    const run = await runCli(['-c', two.config, 'run', '--write-concern', '7']);
    assert.deepEqual(run, {
      code: 1,
      stdout: '',
      stderr: `mmm: server_a: ${impossible('server_a').message} (and 1 more: see \`mmm check\`)\n`,
    });
    // No run started: no status recorded, no checkpoint.
    assert.deepEqual(await Promise.all(two.clients.map((c) => new ReplicationConfigStore(c).sources())), before);
    // -s/--slave and --only restrict the check to that destination and its sources.
    const only = await runCli(['-c', two.config, 'run', '--only', 'server_b', '--write-concern', '7']);
    assert.equal(only.stderr, `mmm: server_b: ${impossible('server_b').message}\n`);
    const slave = await runCli(['-c', two.config, 'run', '-s', 'server_b', '--only', 'server_a']);
    assert.deepEqual(slave, { code: 2, stdout: '', stderr: 'mmm: --slave server_b and --only server_a name different servers: give one\n' });
  });

  test('a standalone mongod: not a replica set member, exit 1', async () => {
    const config = writeTopology(path.join(dir, 'standalone.yml'), {
      server_a: { id: ID_A, uri: two.sets[0]!.uri },
      server_s: { id: ID_B, uri: standalone.uri },
    });
    const { code, stdout, findings } = await check(config);
    assert.equal(code, 1);
    assert.deepEqual(findings.filter((f) => f.level === 'failure'), [
      { level: 'failure', server: 'server_s', check: 'server', message: `${standalone.uri}: not a replica set member; mmm needs the oplog, which only replica sets keep` },
    ]);
    assert.ok(stdout.includes(`FAILURE  server_s: ${standalone.uri}: not a replica set member;`), stdout);
    // server_a is checked all the same.
    assert.ok(findings.some((f) => f.server === 'server_a' && f.check === 'version'));
  });
});

describe('privileges, on a replica set with --auth', { concurrency: false }, () => {
  after(async () => {
    await new ReplicationConfigStore(admin).clear();
    await new ReplicationConfigStore(two.clients[1]!).clear();
  });

  test("the README's minimum roles: check passes, and run replicates both ways with them", async () => {
    const config = securedTopology('minimal', 'minimal', 'minimal-pw');
    await linkBothWays({ a: admin, b: two.clients[1]! });
    const { code, stdout, findings } = await check(config);
    assert.equal(code, 0, stdout);
    assert.deepEqual(
      findings.filter((f) => f.check === 'privileges').map((f) => [f.server, f.message]),
      [
        ['server_a', 'user minimal@admin has the privileges mmm needs as a source and as the destination of its links'],
        ['server_b', 'the server enforces no access control'],
      ],
    );
    const run = new RunProcess(config, ['--status-interval', '0.5']);
    try {
      await run.waitForLog('link started', 2);
      await admin.db('test').collection('foo').insertOne({ _id: 'from-a' as never });
      await two.clients[1]!.db('test').collection('foo').insertOne({ _id: 'from-b' as never });
      await eventually('both documents on both servers', async () => {
        const counts = await Promise.all([admin, two.clients[1]!].map((c) => c.db('test').collection('foo').countDocuments()));
        return counts.every((n) => n === 2);
      });
    } finally {
      assert.equal(await run.stop('SIGINT'), 0, run.stderr);
    }
    assert.ok(!run.stderr.includes('"level":50'), run.stderr);
  });

  test('a user with read, not readWrite, on local: check names what is missing; run and replicate say it in one line', async () => {
    const config = securedTopology('reader', 'reader', 'reader-pw');
    const missing = 'user reader@admin lacks insert, update, remove on local.mmm (grant readWrite on local)';
    const { code, stdout, findings } = await check(config);
    assert.equal(code, 1);
    assert.deepEqual(findings.filter((f) => f.level === 'failure'), [{ level: 'failure', server: 'server_a', check: 'privileges', message: missing }]);
    assert.ok(stdout.includes(`FAILURE  server_a: ${missing}\n`), stdout);

    const run = await runCli(['-c', config, 'run']);
    assert.deepEqual(run, { code: 1, stdout: '', stderr: `mmm: server_a: ${missing}\n` });
    const replicate = await runCli(['-c', config, 'replicate', '--src=server_b/test.bar', '--dst=server_a/test.bar']);
    assert.deepEqual(replicate, {
      code: 1,
      stdout: '',
      stderr: 'mmm: not authorized to run update on local.mmm: the user needs readWrite on local (see `mmm check`)\n',
    });
  });

  test('without dbAdmin and the pre-images role: check names both, and run replicates with --conflicts off', async () => {
    const config = securedTopology('unchecked', 'unchecked', 'unchecked-pw');
    await linkBothWays({ a: admin, b: two.clients[1]! });
    const missing =
      'user unchecked@admin lacks collMod on test.foo (grant dbAdmin on test); find on config.system.preimages (grant a role with that privilege: README, "Privileges")';
    const { code, findings } = await check(config);
    assert.equal(code, 1);
    assert.deepEqual(findings.filter((f) => f.level === 'failure'), [{ level: 'failure', server: 'server_a', check: 'privileges', message: missing }]);
    const clock =
      'user unchecked@admin may not advance the cluster time (advanceClusterTime): writes made here after receiving one are timed by this server\'s clock alone, and can lose to it (README, "Privileges")';
    assert.deepEqual(findings.filter((f) => f.level === 'warning' && f.check === 'privileges'), [{ level: 'warning', server: 'server_a', check: 'privileges', message: clock }]);
    assert.deepEqual(await runCli(['-c', config, 'run']), { code: 1, stdout: '', stderr: `mmm: server_a: ${missing}\n` });
    const run = new RunProcess(config, ['--conflicts', 'off']);
    try {
      await run.waitForLog('link started', 2);
    } finally {
      assert.equal(await run.stop('SIGINT'), 0, run.stderr);
    }
  });

  test('readWriteAnyDatabase does not cover local: what is missing, and dump-config says it in one line', async () => {
    const config = securedTopology('anydb', 'anydb', 'anydb-pw');
    const { code, findings } = await check(config);
    assert.equal(code, 1);
    assert.deepEqual(
      findings.filter((f) => f.level === 'failure').map((f) => f.message),
      [
        'user anydb@admin lacks find on local.oplog.rs; find, insert, update, remove on local.mmm (grant readWrite on local); ' +
          'collMod on test.foo (grant dbAdmin on test); find on config.system.preimages (grant a role with that privilege: README, "Privileges")',
      ],
    );
    const dump = await runCli(['-c', config, 'dump-config']);
    assert.equal(dump.code, 1);
    assert.equal(dump.stderr, 'mmm: server_a: not authorized to run find on local.mmm: the user needs read (or readWrite) on local (see `mmm check`)\n');
    assert.ok(!/lsid|\$clusterTime|signature/.test(dump.stderr));
  });

  test('password_env: the password comes from the environment, percent-encoded by mmm, and is never shown', async () => {
    const file = path.join(dir, 'env.yml');
    const host = secured.members[0]!.host;
    writeFileSync(
      file,
      `server_a:\n  id: '${ID_A}'\n  uri: 'mongodb://from%20env@${host}/?replicaSet=${secured.name}&authSource=admin'\n  password_env: MMM_A_PASSWORD\n` +
        `server_b:\n  id: '${ID_B}'\n  uri: '${two.sets[1]!.uri}'\n`,
    );
    const withEnv = (args: string[], value: string | undefined) => {
      const saved = process.env.MMM_A_PASSWORD;
      if (value === undefined) delete process.env.MMM_A_PASSWORD;
      else process.env.MMM_A_PASSWORD = value;
      try {
        return runCli(['-c', file, ...args]);
      } finally {
        if (saved === undefined) delete process.env.MMM_A_PASSWORD;
        else process.env.MMM_A_PASSWORD = saved;
      }
    };
    const dump = await withEnv(['dump-config'], ENV_PASSWORD);
    assert.equal(dump.code, 0, dump.stderr);
    assert.ok(dump.stdout.includes(`server_a (${ID_A}) => mongodb://from%20env:****@${host}/?replicaSet=${secured.name}&authSource=admin\n`), dump.stdout);
    const checked = await withEnv(['check'], ENV_PASSWORD);
    assert.ok(checked.stdout.includes('ok       server_a: user from env@admin has the privileges mmm needs'), checked.stdout);

    const wrong = await withEnv(['--log-level', 'debug', 'dump-config'], `${ENV_PASSWORD}-wrong`);
    assert.equal(wrong.code, 1);
    assert.ok(wrong.stderr.includes(`\nmmm: server_a (mongodb://from%20env:****@${host}/?replicaSet=${secured.name}&authSource=admin): authentication failed\n`), wrong.stderr);
    const unset = await withEnv(['dump-config'], undefined);
    assert.deepEqual(unset, { code: 2, stdout: '', stderr: `mmm: ${file}: server server_a: password_env: the environment variable MMM_A_PASSWORD is not set\n` });
    for (const result of [dump, checked, wrong, unset]) {
      for (const piece of ['p@ss', 'w:rd', 'never-shown', encodeURIComponent(ENV_PASSWORD)]) {
        assert.ok(!(result.stdout + result.stderr).includes(piece), `${piece} in ${result.stdout}${result.stderr}`);
      }
    }
  });
});
