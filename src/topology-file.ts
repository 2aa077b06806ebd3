// Reads the topology file given with -c: a YAML mapping of server names to {id, uri}, e.g.
//
//   server_a:
//     id: '2c88ae84-7cb9-40f7-835d-c05e981f564d'
//     uri: 'mongodb://localhost:27019'
//     metadata_db: 'mmm'      # optional: keep links and checkpoints in mmm.mmm, not local.mmm
//     password_env: 'MMM_A_PASSWORD'   # optional: the password, from this environment variable
//
// Every problem becomes one ConfigError line naming the file and the server, so a user fixes
// the file without reading a stack trace. URIs are never quoted back: they may hold a password.
//
// With password_env the URI names the user only (`mongodb://mmm@host/...`) and the variable
// holds the password as it is, in plain text: mmm percent-encodes it into the URI, so a
// password with `@`, `/` or `:` needs no escaping, and the file holds no secret.

import { readFileSync } from 'node:fs';
import { CORE_SCHEMA, load, YAMLException } from 'js-yaml';
import { MongoClient } from 'mongodb';
import { ConfigError } from './errors.ts';
import { metadataDatabaseProblem } from './namespace.ts';
import { hasPassword, Topology, uriProblem, withPassword, type ServerSpec } from './topology.ts';

const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const SERVER_KEYS = ['id', 'uri', 'metadata_db', 'password_env'];
const EXPECTED = 'expected a mapping of server names to {id, uri}';

/**
 * Loads and validates the topology file; servers keep the file's order. `env` holds the
 * variables password_env names. Throws ConfigError.
 */
export function loadTopology(path: string, env: NodeJS.ProcessEnv = process.env): Topology {
  const fail = (problem: string) => new ConfigError(`${path}: ${problem}`);
  const document = parseYaml(readTopologyFile(path), fail);
  if (document === undefined || document === null) throw fail(`empty: ${EXPECTED}`);
  if (!isMapping(document)) throw fail(`not a mapping: ${EXPECTED}`);

  const servers: ServerSpec[] = [];
  for (const [name, entry] of Object.entries(document)) {
    const server = toServerSpec(name, entry, env, (problem) => fail(`server ${name}: ${problem}`));
    const twin = servers.find((s) => s.id === server.id);
    if (twin) throw fail(`servers ${twin.name} and ${name} have the same id ${server.id}`);
    servers.push(server);
  }
  if (servers.length === 0) throw fail(`names no servers: ${EXPECTED}`);
  return new Topology(servers);
}

function readTopologyFile(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    // Node's message is "ENOENT: no such file or directory, open 'x.yml'": keep the middle.
    const reason = (err as Error).message.replace(/^[A-Z]+: /, '').replace(/, \w+( '.*')?$/s, '');
    throw new ConfigError(`cannot read topology file ${path}: ${reason}`, { cause: err });
  }
}

function parseYaml(text: string, fail: (problem: string) => ConfigError): unknown {
  try {
    // The core schema: plain YAML 1.2 types, no timestamps or other surprises.
    return load(text, { schema: CORE_SCHEMA });
  } catch (err) {
    if (!(err instanceof YAMLException)) throw err;
    throw fail(`not valid YAML: ${err.reason} (line ${err.mark.line + 1}, column ${err.mark.column + 1})`);
  }
}

function toServerSpec(name: string, entry: unknown, env: NodeJS.ProcessEnv, fail: (problem: string) => ConfigError): ServerSpec {
  // The name is the `server` in `--src server/db.coll`.
  if (name === '' || name.includes('/')) throw fail('a server name must be non-empty and must not contain "/"');
  if (!isMapping(entry)) throw fail('expected a mapping with id and uri');
  const unknown = Object.keys(entry).filter((key) => !SERVER_KEYS.includes(key));
  if (unknown.length > 0) throw fail(`unknown key ${unknown.join(', ')} (expected id, uri and optionally metadata_db, password_env)`);

  const { id, uri: written, metadata_db: metadataDb, password_env: passwordEnv } = entry;
  if (id === undefined) throw fail('no id');
  if (typeof id !== 'string' || !UUID_PATTERN.test(id)) {
    throw fail(`id ${JSON.stringify(id)} is not a UUID (like 2c88ae84-7cb9-40f7-835d-c05e981f564d)`);
  }
  if (written === undefined) throw fail('no uri');
  if (typeof written !== 'string' || written === '') throw fail('uri must be a non-empty string');
  try {
    // The driver's own parser, so that what loads here also connects later.
    new MongoClient(written);
  } catch (err) {
    throw fail(`invalid uri: ${uriProblem((err as Error).message, written)}`);
  }
  const uri = passwordEnv === undefined ? written : withEnvPassword(written, passwordEnv, env, fail);
  if (metadataDb !== undefined) {
    if (typeof metadataDb !== 'string') throw fail('metadata_db must be a database name');
    const problem = metadataDatabaseProblem(metadataDb);
    if (problem) throw fail(`metadata_db ${JSON.stringify(metadataDb)}: ${problem}`);
    return { name, id: id.toLowerCase(), uri, metadataDb };
  }
  return { name, id: id.toLowerCase(), uri };
}

/** The URI with the password that the variable `name` holds. */
function withEnvPassword(uri: string, name: unknown, env: NodeJS.ProcessEnv, fail: (problem: string) => ConfigError): string {
  if (typeof name !== 'string' || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
    throw fail('password_env must be the name of an environment variable, like MMM_A_PASSWORD');
  }
  const password = env[name];
  if (password === undefined || password === '') throw fail(`password_env: the environment variable ${name} is not set`);
  if (hasPassword(uri)) throw fail(`the uri holds a password and password_env names ${name}: keep one`);
  const combined = withPassword(uri, password);
  if (combined === undefined) throw fail(`password_env needs a user name in the uri, as in mongodb://USER@host/`);
  return combined;
}

function isMapping(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
