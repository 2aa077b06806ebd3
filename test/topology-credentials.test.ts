// Passwords in the topology file: a URI of any malformed shape is refused in one line that shows
// no part of its password, on the command line and in what --log-level debug adds; and
// password_env, whose password may hold any character.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { ConfigError } from '../src/errors.ts';
import { loadTopology } from '../src/topology-file.ts';
import { ID_A, runCli } from './support/cli.ts';

const dir = mkdtempSync(path.join(os.tmpdir(), 'mmm-credentials-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** Each URI, the password it was meant to hold, and the reason mmm gives. */
const MALFORMED: Array<{ uri: string; password: string; reason: string }> = [
  { uri: 'mongodb://mmm:Qz/xk:W0vj@127.0.0.1:27017', password: 'Qz/xk:W0vj', reason: 'Password contains unescaped characters' },
  { uri: 'mongodb://mmm:Qz@xkW0vj@127.0.0.1', password: 'Qz@xkW0vj', reason: "it cannot be parsed (an '@' in the password not percent-encoded, as %40?)" },
  { uri: 'mongodb://mmm:Qz:xkW0vj@127.0.0.1', password: 'Qz:xkW0vj', reason: 'Password contains unescaped characters' },
  { uri: 'mongodb://mmm:Qz?xkW0vj@127.0.0.1/?replicaSet=rs0', password: 'Qz?xkW0vj', reason: 'Password contains unescaped characters' },
  { uri: 'mongodb://mmm:Qz#xkW0vj@127.0.0.1', password: 'Qz#xkW0vj', reason: 'Password contains unescaped characters' },
  { uri: 'mongodb://mmm:Qzx8W0vj@', password: 'Qzx8W0vj', reason: 'Protocol and host list are required in the uri' },
  {
    uri: 'mongodb://mmm:Qzx8W0vj',
    password: 'Qzx8W0vj',
    reason: "a host or port cannot be parsed (a missing '@', or an '@' or '/' in the password not percent-encoded, makes part of the credentials look like a host)",
  },
  {
    uri: 'mongodb://mmm:Qz/xkW0vj:1@127.0.0.1:99999',
    password: 'Qz/xkW0vj:1',
    reason: 'Password contains unescaped characters',
  },
  {
    uri: 'mongodb://mmm:Qzx8W0vj@127.0.0.1:99999',
    password: 'Qzx8W0vj',
    reason: "a host or port cannot be parsed (a missing '@', or an '@' or '/' in the password not percent-encoded, makes part of the credentials look like a host)",
  },
  { uri: 'mongdb://mmm:Qzx8W0vj@127.0.0.1', password: 'Qzx8W0vj', reason: 'Invalid scheme, expected connection string to start with "mongodb://" or "mongodb+srv://"' },
  { uri: 'mmm:Qzx8W0vj@127.0.0.1:27017', password: 'Qzx8W0vj', reason: 'Invalid scheme, expected connection string to start with "mongodb://" or "mongodb+srv://"' },
  { uri: 'mongodb://mmm:Qzx%zzW0vj@127.0.0.1', password: 'Qzx%zzW0vj', reason: "a '%' is not followed by two hexadecimal digits (write a '%' in the password as %25)" },
  { uri: 'mongodb://mmm:100%W0vj@127.0.0.1', password: '100%W0vj', reason: "a '%' is not followed by two hexadecimal digits (write a '%' in the password as %25)" },
  { uri: 'mongodb://Qz/xkW0vj@127.0.0.1', password: 'Qz/xkW0vj', reason: 'Username contains unescaped characters (percent-encode @ : / ? # [ ] % in it)' },
  { uri: 'mongodb://:Qzx8W0vj@127.0.0.1', password: 'Qzx8W0vj', reason: 'URI contained empty userinfo section' },
  { uri: 'mongodb+srv://mmm:Qzx8W0vj@cluster.example.com:27017', password: 'Qzx8W0vj', reason: 'mongodb+srv URI cannot have port number' },
  { uri: 'mongodb://mmm:Qzx8W0vj@127.0.0.1/?bogus=1', password: 'Qzx8W0vj', reason: 'option bogus is not supported' },
  { uri: 'mongodb://mmm:Qzx8W0vj@127.0.0.1/?replicaSet', password: 'Qzx8W0vj', reason: 'URI option "replicaSet" cannot be specified with no value' },
  // An option name made of the password's letters is not quoted back.
  {
    uri: 'mongodb://mmm:xkW0vjy@127.0.0.1/?xkW0vjy=1',
    password: 'xkW0vjy',
    reason:
      'the driver cannot parse it (its message is not shown: it would quote part of the credentials); percent-encode @ : / ? # [ ] % in the user name and password, or give the password with password_env',
  },
];

/** Every three characters in a row of the password: none may show. */
function pieces(password: string): string[] {
  return Array.from({ length: Math.max(1, password.length - 2) }, (_, i) => password.slice(i, i + 3));
}

function topologyFile(name: string, body: string): string {
  const file = path.join(dir, name);
  writeFileSync(file, body);
  return file;
}

test('a malformed URI, of every shape: one line, exit 2, no part of the password, even at --log-level debug', async () => {
  for (const [k, { uri, password, reason }] of MALFORMED.entries()) {
    const file = topologyFile(`bad-${k}.yml`, `server_a:\n  id: '${ID_A}'\n  uri: '${uri}'\n`);
    const expected = `mmm: ${file}: server server_a: invalid uri: ${reason}\n`;
    const commands = [['dump-config'], ['check'], ['status'], ['--log-level', 'debug', 'run']];
    const results = await Promise.all(commands.map((command) => runCli(['-c', file, ...command])));
    for (const [c, result] of results.entries()) {
      const command = commands[c]!;
      const output = result.stdout + result.stderr;
      assert.equal(result.code, 2, `${uri}: ${output}`);
      if (!command.includes('debug')) assert.deepEqual(result, { code: 2, stdout: '', stderr: expected }, uri);
      else assert.ok(result.stderr.startsWith(expected), `${uri}: ${result.stderr}`);
      for (const piece of pieces(password)) assert.ok(!output.includes(piece), `${JSON.stringify(piece)} of ${uri} shown: ${output}`);
    }
  }
});

test('password_env: the variable holds the password as it is; mmm percent-encodes it into the URI', () => {
  const password = 'p@ss/w:rd%?#[]';
  const file = topologyFile('env.yml', `server_a:\n  id: '${ID_A}'\n  uri: 'mongodb://mmm@127.0.0.1:27017/?replicaSet=rs0'\n  password_env: MMM_A_PASSWORD\n`);
  const topology = loadTopology(file, { MMM_A_PASSWORD: password });
  assert.deepEqual(topology.servers, [
    { name: 'server_a', id: ID_A, uri: `mongodb://mmm:${encodeURIComponent(password)}@127.0.0.1:27017/?replicaSet=rs0` },
  ]);

  const refused = (body: string, env: Record<string, string>, problem: string) => {
    const p = topologyFile(`env-${problem.length}.yml`, body);
    assert.throws(
      () => loadTopology(p, env),
      (err) => err instanceof ConfigError && err.message === `${p}: server server_a: ${problem}`,
    );
  };
  const server = (uri: string, env = 'MMM_A_PASSWORD') => `server_a:\n  id: '${ID_A}'\n  uri: '${uri}'\n  password_env: ${env}\n`;
  refused(server('mongodb://mmm@h'), {}, 'password_env: the environment variable MMM_A_PASSWORD is not set');
  refused(server('mongodb://mmm@h'), { MMM_A_PASSWORD: '' }, 'password_env: the environment variable MMM_A_PASSWORD is not set');
  refused(server('mongodb://mmm:inline@h'), { MMM_A_PASSWORD: 'x' }, 'the uri holds a password and password_env names MMM_A_PASSWORD: keep one');
  refused(server('mongodb://h'), { MMM_A_PASSWORD: 'x' }, 'password_env needs a user name in the uri, as in mongodb://USER@host/');
  refused(server('mongodb://mmm@h', "'1 bad'"), {}, 'password_env must be the name of an environment variable, like MMM_A_PASSWORD');
});
