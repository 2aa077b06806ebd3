// Namespaces: `db.coll`, and `server/db.coll` as --src and --dst take them. A namespace MongoDB
// would refuse, or one of its own (system collections; the admin, config and local databases),
// is a UsageError here, before anything is written anywhere.
// Rules: https://www.mongodb.com/docs/manual/reference/limits/#naming-restrictions

import { UsageError } from './errors.ts';

export interface Namespace {
  readonly db: string;
  readonly coll: string;
  /** `db.coll`. */
  readonly ns: string;
}

export interface ServerNamespace extends Namespace {
  /** The server's name in the topology file. */
  readonly server: string;
}

/** Characters MongoDB forbids in database names (on every platform, `\0` included). */
const DB_FORBIDDEN = ['/', '\\', '.', ' ', '"', '$', '\0'];
const COLL_FORBIDDEN = ['$', '\0'];
/** Database names are shorter than 64 bytes; whole namespaces at most 255 (MongoDB 4.4+). */
const DB_MAX_BYTES = 63;
const NS_MAX_BYTES = 255;
/** Databases the server keeps for itself; names differing only in case cannot be created. */
const RESERVED_DBS = ['admin', 'config', 'local'];

/** Parses `server/db.coll`; `label` (e.g. `--src`) starts each error message. Throws UsageError. */
export function parseServerNamespace(text: string, label = 'namespace'): ServerNamespace {
  const fail = (problem: string) => new UsageError(`${label} ${JSON.stringify(text)}: ${problem}`);
  const slash = text.indexOf('/');
  if (slash === -1) throw fail('expected server/db.collection');
  const server = text.slice(0, slash);
  if (server === '') throw fail('no server name before "/"');
  return { server, ...splitNamespace(text.slice(slash + 1), fail) };
}

/**
 * What is wrong with `db` as the database that keeps mmm's metadata (`<db>.mmm`), or undefined:
 * `local` (the default) or a database MongoDB accepts and replicates, not admin or config.
 */
export function metadataDatabaseProblem(db: string): string | undefined {
  if (db === '') return 'a database name must not be empty';
  const badChar = DB_FORBIDDEN.find((c) => db.includes(c));
  if (badChar !== undefined) return `database names cannot contain ${JSON.stringify(badChar)}`;
  if (Buffer.byteLength(db) > DB_MAX_BYTES) return `database names are at most ${DB_MAX_BYTES} bytes long`;
  if (db !== 'local' && RESERVED_DBS.includes(db.toLowerCase())) return `the ${db} database belongs to MongoDB itself`;
  return undefined;
}

/** Parses `db.coll` (the first dot ends the database name). Throws UsageError. */
export function parseNamespace(ns: string, label = 'namespace'): Namespace {
  return splitNamespace(ns, (problem) => new UsageError(`${label} ${JSON.stringify(ns)}: ${problem}`));
}

function splitNamespace(ns: string, fail: (problem: string) => UsageError): Namespace {
  if (ns === '') throw fail('no namespace: expected db.collection');
  const dot = ns.indexOf('.');
  const db = dot === -1 ? ns : ns.slice(0, dot);
  const coll = dot === -1 ? '' : ns.slice(dot + 1);
  if (db === '') throw fail('no database name before "."');
  if (coll === '') throw fail('no collection: expected db.collection');

  const badDbChar = DB_FORBIDDEN.find((c) => db.includes(c));
  if (badDbChar !== undefined) throw fail(`database names cannot contain ${JSON.stringify(badDbChar)}`);
  if (Buffer.byteLength(db) > DB_MAX_BYTES) throw fail(`database names are at most ${DB_MAX_BYTES} bytes long`);
  if (RESERVED_DBS.includes(db.toLowerCase())) {
    throw fail(`the ${db} database belongs to MongoDB itself and cannot be replicated`);
  }
  const badCollChar = COLL_FORBIDDEN.find((c) => coll.includes(c));
  if (badCollChar !== undefined) throw fail(`collection names cannot contain ${JSON.stringify(badCollChar)}`);
  if (coll.startsWith('system.')) throw fail('system collections belong to MongoDB itself and cannot be replicated');
  if (Buffer.byteLength(ns) > NS_MAX_BYTES) throw fail(`namespaces are at most ${NS_MAX_BYTES} bytes long`);
  return { db, coll, ns };
}
