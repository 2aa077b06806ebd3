// Changes on a replicated namespace that mmm does not replicate, as warnings: mmm replicates
// documents, not DDL, and writes to a time-series collection are logged on its buckets
// collection, which it cannot replay as the collection's own writes. Each such change leaves the
// servers different without a single document write to show it, so it is said, once per oplog
// entry, naming the replicated namespace it affects.
//
// The oplog shapes, as MongoDB 6.0.5 logs them (test/commands-warnings.test.ts captures each from
// a real server), all under `<db>.$cmd`:
// - `{drop: 'coll'}`; a time-series collection drops as `{drop: 'system.buckets.coll'}`.
// - `{renameCollection: 'db.a', to: 'db.b', stayTemp: false, dropTarget?: <UUID of the replaced
//   collection>}`. `$out` writes `db.tmp.agg_out.<uuid>`, then renames it onto its target (with
//   `dropTarget` when the target existed). A rename to another database is logged as a copy into
//   `<to db>.tmpXXXXX.renameCollection`, a rename of that onto the target, and a `drop` of the
//   source.
// - `{dropDatabase: 1}`, after a `drop` entry for each of the database's collections.
// - `{create: 'system.buckets.coll', timeseries: {...}}` for a time-series collection, whose
//   writes are then `i`/`u`/`d` entries on `db.system.buckets.coll`; an insert there opens a new
//   bucket (the first measurement of a series in a time span), later measurements update it.
// - `{createIndexes: 'coll', v: 2, key: {...}, name: '...', unique?: true}` for an index built at
//   once (on an empty collection, or in a transaction), else
//   `{startIndexBuild: 'coll', indexes: [...]}` then `{commitIndexBuild: 'coll', indexes: [...]}`
//   (or `abortIndexBuild`); `{dropIndexes: 'coll', index: 'name'}`; `{collMod: 'coll', ...}`.
//
// Not warned: `create` of an ordinary collection (every first insert makes one), and
// `startIndexBuild`/`abortIndexBuild` (a build in progress, or one that left nothing). The
// index exists from `commitIndexBuild` on, so that is where an index build is warned.

import type { Timestamp } from 'mongodb';
import type { SkippedCommand } from '../oplog/decode.ts';

export interface LinkWarning {
  /** The command, as the oplog names it (`renameCollection` for `$out`), or `insert` for time-series writes. */
  command: string;
  /** The replicated namespace affected (`db.coll`), or the database for `dropDatabase`. */
  ns: string;
  /** The oplog entry. */
  ts: Timestamp;
  /** One sentence: what happened, that it is not replicated, and what to do. */
  message: string;
}

export interface LinkWarningsInput {
  /** The commands of a decoded batch, in oplog order. */
  commands: readonly SkippedCommand[];
  /** The changes of the same batch (their namespaces tell time-series writes). */
  changes: Iterable<{ ns: string; ts: Timestamp; op: string }>;
  /** The source namespaces the loop replicates. */
  linked: ReadonlySet<string>;
  /** The source server's name, for the messages. */
  source: string;
}

const BUCKETS = 'system.buckets.';

export function linkWarnings(input: LinkWarningsInput): LinkWarning[] {
  const { commands, changes, linked, source } = input;
  const warnings: LinkWarning[] = [];
  const timeSeries = new Set<string>(); // reported in this batch already
  for (const cmd of commands) {
    for (const warning of commandWarnings(cmd, linked, source)) {
      if (cmd.name === 'create') timeSeries.add(warning.ns);
      warnings.push(warning);
    }
  }
  for (const change of changes) {
    // A new bucket, not every measurement: a warning per series and time span, not per write.
    if (change.op !== 'i') continue;
    const ns = replicatedTimeSeries(change.ns, linked);
    if (ns === undefined || timeSeries.has(ns)) continue;
    timeSeries.add(ns);
    warnings.push({
      command: 'insert',
      ns,
      ts: change.ts,
      message:
        `writes on ${change.ns} are not replicated: ${ns} is a time-series collection on ${source}, ` +
        `whose writes mmm cannot replicate; unlink it (mmm unreplicate), or make it an ordinary collection again`,
    });
  }
  return warnings;
}

function commandWarnings(cmd: SkippedCommand, linked: ReadonlySet<string>, source: string): LinkWarning[] {
  const { db, name, o, ts } = cmd;
  const warn = (ns: string, message: string): LinkWarning => ({ command: name, ns, ts, message });
  const target = typeof o[name] === 'string' ? `${db}.${o[name] as string}` : undefined;
  switch (name) {
    case 'drop': {
      const ns = target && replicated(target, linked);
      if (!ns) return [];
      return [warn(ns, `drop of ${ns} is not replicated: the collection and its documents are gone on ${source} only; drop it on every server, or copy it back to ${source}`)];
    }
    case 'renameCollection':
      return renameWarnings(cmd, linked, source);
    case 'dropDatabase': {
      const held = [...linked].filter((ns) => ns.startsWith(`${db}.`));
      if (held.length === 0) return [];
      return [
        warn(
          db,
          `dropDatabase of ${db} is not replicated: its replicated collections (${held.join(', ')}) are gone on ${source} only; ` +
            `drop them on every server, or copy them back to ${source}`,
        ),
      ];
    }
    case 'create': {
      // Only the one that makes a replicated namespace a time-series collection.
      const ns = target && replicatedTimeSeries(target, linked);
      if (!ns) return [];
      return [
        warn(
          ns,
          `${ns} became a time-series collection on ${source}: its writes are logged on ${target}, which mmm cannot replicate; ` +
            `unlink it (mmm unreplicate), or make it an ordinary collection again`,
        ),
      ];
    }
    case 'collMod': {
      const ns = target && replicated(target, linked);
      if (!ns) return [];
      const options = Object.keys(o).filter((k) => k !== 'collMod');
      // Pre-images are mmm's own doing, on every server whose links resolve conflicts (../conflict/preimages.ts).
      if (options.length === 1 && options[0] === 'changeStreamPreAndPostImages' && o.changeStreamPreAndPostImages?.enabled === true) return [];
      return [warn(ns, `collMod of ${ns} (${options.join(', ')}) is not replicated: the collection's options changed on ${source} only; run it on every server`)];
    }
    case 'createIndexes':
    case 'commitIndexBuild': {
      const ns = target && replicated(target, linked);
      if (!ns) return [];
      // createIndexes logs its one index inline, an index build the list of its `indexes`.
      const specs = (name === 'createIndexes' ? [o] : Array.isArray(o.indexes) ? o.indexes : []) as Array<{ name?: unknown; unique?: unknown }>;
      const names = specs.map((s) => String(s.name)).join(', ');
      const unique = specs.some((s) => s.unique === true)
        ? ` (unique: writes replicated into ${source} that break it will be refused there)`
        : '';
      return [warn(ns, `index ${names} on ${ns} is not replicated: it exists on ${source} only${unique}; create it on every server`)];
    }
    case 'dropIndexes': {
      const ns = target && replicated(target, linked);
      if (!ns) return [];
      const index = typeof o.index === 'string' ? o.index : JSON.stringify(o.index);
      return [warn(ns, `dropIndexes of ${index} on ${ns} is not replicated: the index is gone on ${source} only; drop it on every server`)];
    }
    default:
      return [];
  }
}

/** A rename into a replicated namespace replaces or fills it; one from it takes it away. */
function renameWarnings(cmd: SkippedCommand, linked: ReadonlySet<string>, source: string): LinkWarning[] {
  const { name, o, ts } = cmd;
  const from = String(o.renameCollection);
  const to = String(o.to);
  const replaced = o.dropTarget !== undefined && o.dropTarget !== false;
  const warnings: LinkWarning[] = [];
  const into = replicated(to, linked);
  if (into) {
    const fix = `do it on every server, or copy the collection from ${source}`;
    let message: string;
    if (collection(from).startsWith('tmp.agg_out.')) {
      message = replaced
        ? `$out into ${into} is not replicated: it replaced the collection on ${source} only (the other servers keep the documents they had); ${fix}`
        : `$out into ${into} is not replicated: it created the collection on ${source} only; ${fix}`;
    } else {
      // A rename from another database comes from a temporary copy (see the top of this file).
      const what = /^tmp.{5}\.renameCollection$/.test(collection(from)) ? `renameCollection into ${into}` : `renameCollection of ${from} to ${into}`;
      message = replaced
        ? `${what} (dropTarget) is not replicated: it replaced the collection on ${source} only; ${fix}`
        : `${what} is not replicated: the collection's documents are on ${source} only; ${fix}`;
    }
    warnings.push({ command: name, ns: into, ts, message });
  }
  const away = replicated(from, linked);
  if (away) {
    warnings.push({
      command: name,
      ns: away,
      ts,
      message: `renameCollection of ${away} to ${to} is not replicated: ${away} is gone on ${source} only, and writes to ${to} are not replicated; rename it on every server, or rename it back`,
    });
  }
  return warnings;
}

/** The replicated namespace `ns` is, or whose buckets collection it is. */
function replicated(ns: string, linked: ReadonlySet<string>): string | undefined {
  return linked.has(ns) ? ns : replicatedTimeSeries(ns, linked);
}

/** `db.coll` when `ns` is `db.system.buckets.coll` and `db.coll` is replicated. */
function replicatedTimeSeries(ns: string, linked: ReadonlySet<string>): string | undefined {
  const dot = ns.indexOf('.');
  if (!ns.startsWith(BUCKETS, dot + 1)) return undefined;
  const plain = `${ns.slice(0, dot)}.${ns.slice(dot + 1 + BUCKETS.length)}`;
  return linked.has(plain) ? plain : undefined;
}

/** The collection part of `db.coll`. */
function collection(ns: string): string {
  return ns.slice(ns.indexOf('.') + 1);
}
