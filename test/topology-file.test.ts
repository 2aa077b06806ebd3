// The topology file: what loads, and the one-line error for each way it can be wrong.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { ConfigError } from '../src/errors.ts';
import { loadTopology } from '../src/topology-file.ts';
import { redactPassword } from '../src/topology.ts';

const dir = mkdtempSync(path.join(os.tmpdir(), 'mmm-topology-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const ID_A = '2c88ae84-7cb9-40f7-835d-c05e981f564d';
const ID_B = '0d9c284b-b47c-40b5-932c-547b8685edd0';
let fileCount = 0;

function file(text: string): string {
  const p = path.join(dir, `topology-${fileCount++}.yml`);
  writeFileSync(p, text);
  return p;
}

function assertConfigError(p: string, expected: string): void {
  assert.throws(
    () => loadTopology(p),
    (err) => err instanceof ConfigError && err.message === `${p}: ${expected}`,
  );
}

test('servers load in file order, with ids in lower case', () => {
  const topology = loadTopology(
    file(`
server_b:
  id: '${ID_B.toUpperCase()}'
  uri: 'mongodb://localhost:27017'
server_a:
  id: ${ID_A}
  uri: mongodb://user:pw@localhost:27019/?replicaSet=rs0
`),
  );
  assert.deepEqual(topology.servers, [
    { name: 'server_b', id: ID_B, uri: 'mongodb://localhost:27017' },
    { name: 'server_a', id: ID_A, uri: 'mongodb://user:pw@localhost:27019/?replicaSet=rs0' },
  ]);
  assert.equal(topology.byId(ID_B)?.name, 'server_b');
  assert.equal(topology.byName('server_a')?.id, ID_A);
});

test("metadata_db names the database of a server's links and checkpoints", () => {
  const topology = loadTopology(file(`server_a:\n  id: '${ID_A}'\n  uri: 'mongodb://a'\n  metadata_db: 'mmm'\nserver_b:\n  id: '${ID_B}'\n  uri: 'mongodb://b'\n`));
  assert.deepEqual(topology.servers, [
    { name: 'server_a', id: ID_A, uri: 'mongodb://a', metadataDb: 'mmm' },
    { name: 'server_b', id: ID_B, uri: 'mongodb://b' },
  ]);
  assertConfigError(file(`server_a:\n  id: '${ID_A}'\n  uri: 'mongodb://a'\n  metadata_db: 12\n`), 'server server_a: metadata_db must be a database name');
  assertConfigError(file(`server_a:\n  id: '${ID_A}'\n  uri: 'mongodb://a'\n  metadata_db: 'Admin'\n`), 'server server_a: metadata_db "Admin": the Admin database belongs to MongoDB itself');
});

test('a missing or unreadable file', () => {
  const missing = path.join(dir, 'missing.yml');
  assert.throws(
    () => loadTopology(missing),
    (err) => err instanceof ConfigError && err.message === `cannot read topology file ${missing}: no such file or directory`,
  );
  assert.throws(
    () => loadTopology(dir),
    (err) => err instanceof ConfigError && err.message === `cannot read topology file ${dir}: illegal operation on a directory`,
  );
});

test('a file that is not YAML, or not a mapping of servers', () => {
  assertConfigError(file('server_a: [unclosed\n'), 'not valid YAML: unexpected end of the stream within a flow collection (line 2, column 1)');
  assertConfigError(file(`server_a:\n  id: '${ID_A}'\nserver_a:\n  id: '${ID_B}'\n`), 'not valid YAML: duplicated mapping key (line 3, column 1)');
  assertConfigError(file(''), 'empty: expected a mapping of server names to {id, uri}');
  assertConfigError(file('# nothing yet\n'), 'empty: expected a mapping of server names to {id, uri}');
  assertConfigError(file('- server_a\n- server_b\n'), 'not a mapping: expected a mapping of server names to {id, uri}');
  assertConfigError(file('just text\n'), 'not a mapping: expected a mapping of server names to {id, uri}');
  assertConfigError(file('{}\n'), 'names no servers: expected a mapping of server names to {id, uri}');
});

test('a server that is not a mapping, or lacks id or uri, or has other keys', () => {
  assertConfigError(file("server_a: 'mongodb://localhost'\n"), 'server server_a: expected a mapping with id and uri');
  assertConfigError(file('server_a:\n'), 'server server_a: expected a mapping with id and uri');
  assertConfigError(file("server_a:\n  uri: 'mongodb://localhost'\n"), 'server server_a: no id');
  assertConfigError(file(`server_a:\n  id: '${ID_A}'\n`), 'server server_a: no uri');
  assertConfigError(file(`server_a:\n  id: '${ID_A}'\n  uri: 27017\n`), 'server server_a: uri must be a non-empty string');
  assertConfigError(
    file(`server_a:\n  id: '${ID_A}'\n  uri: 'mongodb://localhost'\n  name: 'a'\n`),
    'server server_a: unknown key name (expected id, uri and optionally metadata_db, password_env)',
  );
  assertConfigError(
    file(`a/b:\n  id: '${ID_A}'\n  uri: 'mongodb://localhost'\n`),
    'server a/b: a server name must be non-empty and must not contain "/"',
  );
});

test('an id that is not a UUID, and two servers with one id', () => {
  const like = '(like 2c88ae84-7cb9-40f7-835d-c05e981f564d)';
  assertConfigError(file("server_a:\n  id: 'server-a'\n  uri: 'mongodb://localhost'\n"), `server server_a: id "server-a" is not a UUID ${like}`);
  assertConfigError(file("server_a:\n  id: 12\n  uri: 'mongodb://localhost'\n"), `server server_a: id 12 is not a UUID ${like}`);
  assertConfigError(
    file(`server_a:\n  id: '${ID_A}'\n  uri: 'mongodb://a'\nserver_b:\n  id: '${ID_A.toUpperCase()}'\n  uri: 'mongodb://b'\n`),
    `servers server_a and server_b have the same id ${ID_A}`,
  );
});

test('a URI the driver rejects, without its password', () => {
  const cases: Array<[string, string]> = [
    ['http://localhost:27017', 'Invalid scheme, expected connection string to start with "mongodb://" or "mongodb+srv://"'],
    ['mongodb://user:hunter2@localhost/?replicaSet=rs0&bogus=1', 'option bogus is not supported'],
    ['mongodb://user:hunter2/x@localhost', 'Password contains unescaped characters'],
  ];
  for (const [uri, reason] of cases) {
    const p = file(`server_a:\n  id: '${ID_A}'\n  uri: '${uri}'\n`);
    assertConfigError(p, `server server_a: invalid uri: ${reason}`);
  }
});

test('redactPassword hides the password in a message about the URI, even a malformed one', () => {
  assert.equal(redactPassword('bad "mongodb://u:p@ss/w@h"', 'mongodb://u:p@ss/w@h'), 'bad "mongodb://u:****@h"');
  assert.equal(redactPassword('bad host h:x', 'mongodb://u:secret@h:x/?w=1'), 'bad host h:x');
  assert.equal(redactPassword('no credentials in mongodb://h', 'mongodb://h'), 'no credentials in mongodb://h');
});
