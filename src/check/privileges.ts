// The privileges mmm needs on a server, whether its user has them, and a refused command told
// in one line. What each server needs (README, "Privileges"):
//
//   every server      find on local.oplog.rs                          read on local (status, and as a source)
//                     find, insert, update, remove on <metadata>.mmm   readWrite on the metadata database
//   a destination     the same on mmm.writes and mmm.refused          readWrite on mmm (loop breaking, refused writes)
//                     the same on every collection its links write     readWrite on those databases
//   a source whose     collMod on each collection such a link reads     dbAdmin on its database
//   destination        find on config.system.preimages                  a role of its own (README)
//   replicates back,   (conflict detection: ../conflict/preimages.ts)
//   and that destination (collMod on the collections such links write)
//
// With the default metadata database, `local`, the first two make `readWrite` on `local`.
// The user's privileges come from `connectionStatus` (which any user may run) and are matched as
// the server matches them: a database-wide grant covers its collections except system ones, and
// a grant on every database (readWriteAnyDatabase) covers neither `local` nor `config`.

import type { MongoClient } from 'mongodb';
import { CONFLICTS_COLLECTION, MARKER_COLLECTION, MMM_DATABASE, REFUSED_COLLECTION, TOMBSTONES_COLLECTION } from '../replicate/tag.ts';

/** The actions mmm needs on one namespace, and why. */
export interface Requirement {
  db: string;
  collection: string;
  actions: readonly Action[];
}

export type Action = 'find' | 'insert' | 'update' | 'remove' | 'collMod';

/** A resource and its actions, as connectionStatus lists them. */
export interface GrantedPrivilege {
  resource: { db?: string; collection?: string; cluster?: boolean; anyResource?: boolean };
  actions: string[];
}

/** What the user may do: everything (no access control), or these privileges. */
export type Grants = { kind: 'unrestricted' } | { kind: 'privileges'; user: string | null; privileges: GrantedPrivilege[] };

/** The oplog, where mmm reads a source's changes and status reads each window. */
const OPLOG = { db: 'local', collection: 'oplog.rs' };
/** The database where a destination records mmm's own writes (loop breaking) and refused ones. */
const OWN_COLLECTIONS = [MARKER_COLLECTION, REFUSED_COLLECTION, CONFLICTS_COLLECTION, TOMBSTONES_COLLECTION];
/** Where a source keeps the pre-images that conflict detection reads. */
const PRE_IMAGES = { db: 'config', collection: 'system.preimages' };
const READ_WRITE: readonly Action[] = ['find', 'insert', 'update', 'remove'];
/** Unauthorized: the server's code for a command the user may not run. */
export const UNAUTHORIZED = 13;

export interface ServerNeeds {
  /** The database of the server's links and checkpoints, when they are read or written. */
  metadataDb?: string;
  /** Namespaces (`db.coll`) its links write, as a destination. */
  destinationNamespaces: readonly string[];
  /** Namespaces it is the source or the destination of for links whose destination replicates back: their pre-images are kept and read. */
  preImageNamespaces?: readonly string[];
}

export function requiredPrivileges(needs: ServerNeeds): Requirement[] {
  const required: Requirement[] = [{ ...OPLOG, actions: ['find'] }];
  if (needs.metadataDb !== undefined) required.push({ db: needs.metadataDb, collection: 'mmm', actions: READ_WRITE });
  if (needs.destinationNamespaces.length > 0) {
    for (const collection of OWN_COLLECTIONS) required.push({ db: MMM_DATABASE, collection, actions: READ_WRITE });
    for (const ns of new Set(needs.destinationNamespaces)) {
      const dot = ns.indexOf('.');
      required.push({ db: ns.slice(0, dot), collection: ns.slice(dot + 1), actions: READ_WRITE });
    }
  }
  const preImages = new Set(needs.preImageNamespaces ?? []);
  if (preImages.size > 0) {
    for (const ns of preImages) {
      const dot = ns.indexOf('.');
      required.push({ db: ns.slice(0, dot), collection: ns.slice(dot + 1), actions: ['collMod'] });
    }
    required.push({ ...PRE_IMAGES, actions: ['find'] });
  }
  return required;
}

/** The user's privileges on this server. */
export async function grantedPrivileges(client: MongoClient): Promise<Grants> {
  const status = await client.db('admin').command({ connectionStatus: 1, showPrivileges: true });
  const users = (status.authInfo?.authenticatedUsers ?? []) as Array<{ user: string; db: string }>;
  if (users.length === 0) {
    // Nobody logged in: either the server enforces no access control, and anything goes, or
    // nothing is allowed. Reading the oplog tells which.
    try {
      await client.db(OPLOG.db).collection(OPLOG.collection).findOne({}, { projection: { ts: 1 } });
      return { kind: 'unrestricted' };
    } catch (err) {
      if ((err as { code?: unknown }).code === UNAUTHORIZED) return { kind: 'privileges', user: null, privileges: [] };
      throw err;
    }
  }
  return {
    kind: 'privileges',
    user: users.map((u) => `${u.user}@${u.db}`).join(', '),
    privileges: (status.authInfo?.authenticatedUserPrivileges ?? []) as GrantedPrivilege[],
  };
}

/** The requirements (or the part of each) that `grants` do not cover. */
export function missingPrivileges(grants: Grants, required: readonly Requirement[]): Requirement[] {
  if (grants.kind === 'unrestricted') return [];
  const missing: Requirement[] = [];
  for (const need of required) {
    const actions = need.actions.filter((action) => !grants.privileges.some((p) => grantsAction(p, need.db, need.collection, action)));
    if (actions.length > 0) missing.push({ ...need, actions });
  }
  return missing;
}

/**
 * Whether the user may show the server a cluster time it has not reached (`advanceClusterTime`
 * on the cluster): how a destination takes its sources' times (../apply/carried-clock.ts).
 */
export function mayAdvanceClock(grants: Grants): boolean {
  if (grants.kind === 'unrestricted') return true;
  return grants.privileges.some(
    (p) => (p.resource.cluster === true || p.resource.anyResource === true) && (p.actions.includes('advanceClusterTime') || p.actions.includes('anyAction')),
  );
}

function grantsAction(privilege: GrantedPrivilege, db: string, collection: string, action: Action): boolean {
  if (!privilege.actions.includes(action) && !privilege.actions.includes('anyAction')) return false;
  const r = privilege.resource;
  if (r.anyResource) return true;
  if (r.cluster || r.db === undefined || r.collection === undefined) return false;
  if (r.db === db && r.collection === collection) return true;
  const system = collection.startsWith('system.');
  if (r.db === db && r.collection === '') return !system;
  if (r.db === '' && r.collection === collection) return !system;
  // A grant on every database leaves out the server's own: local and config.
  return r.db === '' && r.collection === '' && !system && db !== 'local' && db !== 'config';
}

/**
 * The missing privileges in one line, with the roles that would grant them:
 * `insert, update, remove on local.mmm (grant readWrite on local); ...`.
 */
export function describeMissing(missing: readonly Requirement[]): string {
  const byDb = new Map<string, Requirement[]>();
  const parts: string[] = [];
  // Those of conflict detection come last, each with its own grant.
  const detection: string[] = [];
  for (const need of missing) {
    if (need.db === PRE_IMAGES.db && need.collection === PRE_IMAGES.collection) {
      detection.push(`find on ${PRE_IMAGES.db}.${PRE_IMAGES.collection} (grant a role with that privilege: README, "Privileges")`);
    } else if (need.actions.includes('collMod')) {
      detection.push(`collMod on ${need.db}.${need.collection} (grant dbAdmin on ${need.db})`);
    } else {
      byDb.set(need.db, [...(byDb.get(need.db) ?? []), need]);
    }
  }
  for (const [db, needs] of byDb) {
    const byActions = new Map<string, string[]>();
    for (const need of needs) {
      const key = need.actions.join(', ');
      byActions.set(key, [...(byActions.get(key) ?? []), `${db}.${need.collection}`]);
    }
    const what = [...byActions].map(([actions, namespaces]) => `${actions} on ${namespaces.join(', ')}`).join('; ');
    const role = needs.every((n) => n.actions.every((a) => a === 'find')) ? 'read' : 'readWrite';
    parts.push(`${what} (grant ${role} on ${db})`);
  }
  return [...parts, ...detection].join('; ');
}

/** Command names as the server's Unauthorized message shows them, and the action each needs. */
const COMMAND_ACTIONS: Record<string, Action> = {
  find: 'find',
  getMore: 'find',
  aggregate: 'find',
  count: 'find',
  distinct: 'find',
  insert: 'insert',
  update: 'update',
  findAndModify: 'update',
  delete: 'remove',
  collMod: 'collMod',
};

/**
 * A command the server refused for want of a privilege, in one line: `not authorized to update
 * local.mmm: the user needs readWrite on local`, or undefined for any other error. The driver's
 * message would quote the whole command, session id and cluster time signature included.
 */
export function describeUnauthorized(err: unknown): string | undefined {
  const e = err as { code?: unknown; errmsg?: unknown; message?: unknown };
  if (e?.code !== UNAUTHORIZED) return undefined;
  const text = typeof e.errmsg === 'string' ? e.errmsg : String(e.message);
  // "not authorized on local to execute command { update: "mmm", ... }"
  const match = /^not authorized on (\S+) to execute command \{ (\w+): (?:"([^"]*)")?/.exec(text);
  if (!match) return 'not authorized: the user lacks a privilege mmm needs (see `mmm check`)';
  const [, db, command, named] = match as unknown as [string, string, string, string | undefined];
  // getMore names its collection in a field of its own.
  const collection = named ?? /\bcollection: "([^"]*)"/.exec(text)?.[1];
  const target = collection ? `${db}.${collection}` : db;
  const action = COMMAND_ACTIONS[command!];
  const role =
    action === undefined ? 'a role' : action === 'collMod' ? `dbAdmin on ${db}` : action === 'find' ? `read (or readWrite) on ${db}` : `readWrite on ${db}`;
  return `not authorized to run ${command} on ${target}: the user needs ${role} (see \`mmm check\`)`;
}
