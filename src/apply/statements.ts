// Encoding: a run of planned writes of one collection in, their write commands out. Each write
// becomes one statement of the `insert`, `update` or `delete` command (./write-commands.ts), in
// order, and consecutive statements of one command go out together, as the driver's ordered
// bulkWrite would send them, without its machinery: it sized each statement, copied it into
// operation objects of its own and encoded it in the command, about a fifth of mmm's CPU in a
// catch-up of updates. A document or a modifier that came as bytes is spliced into its
// statement as it is.

import { BSON, type ClientSession, type MongoClient } from 'mongodb';
import { copyBytes } from '../bson/raw.ts';
import { sendStatements, StatementWriteError, type WriteCommand } from './write-commands.ts';
import type { ApplyStats, DestinationWrite } from './writer.ts';

/** As the driver encodes a command's documents: `undefined` as null, keys and functions as they are. */
const ENCODE = { checkKeys: false, serializeFunctions: false, ignoreUndefined: false } as const;

/** The command that carries `w`: a plain insert is an insert, unless inserts are upserted; a rebuild is not sent here. */
export function commandOf(w: DestinationWrite, upsertInserts: boolean): WriteCommand {
  if (w.kind === 'delete') return 'delete';
  if (w.kind === 'insert' && !upsertInserts && w.spec.kind === 'replacement') return 'insert';
  return 'update';
}

/** `w` as a statement of `command` (commandOf), in BSON. */
export function statementOf(w: DestinationWrite, command: WriteCommand): Uint8Array {
  if (w.kind === 'delete') return BSON.serialize({ q: { _id: w.id }, limit: 1 }, ENCODE);
  const { spec } = w;
  if (spec.kind === 'rebuild') throw new Error('a rebuild is its own statement');
  if (spec.kind === 'replacement' && command === 'insert') return spec.bytes ?? BSON.serialize(spec.document, ENCODE);
  // A document or a modifier that came as bytes goes into the statement as it is.
  if (spec.kind !== 'pipeline' && spec.bytes) return updateWithDocument(BSON.serialize({ _id: w.id }, ENCODE), spec.bytes, w.upsert);
  const u = spec.kind === 'replacement' ? spec.document : spec.kind === 'modifier' ? spec.update : spec.pipeline;
  return BSON.serialize({ q: { _id: w.id }, u, upsert: w.upsert }, ENCODE);
}

const DOCUMENT = 0x03;
const BOOLEAN = 0x08;
const Q = Buffer.from('q\0');
const U = Buffer.from('u\0');
const UPSERT = Buffer.from('upsert\0');

/** `{q: filter, u: document, upsert}`, the two documents given as BSON and copied in as they are. */
function updateWithDocument(filter: Uint8Array, document: Uint8Array, upsert: boolean): Uint8Array {
  const length = 4 + (1 + Q.length + filter.length) + (1 + U.length + document.length) + (1 + UPSERT.length + 1) + 1;
  const out = Buffer.allocUnsafe(length);
  out.writeInt32LE(length, 0);
  let at = putElement(out, 4, DOCUMENT, Q, filter);
  at = putElement(out, at, DOCUMENT, U, document);
  out[at++] = BOOLEAN;
  at += copyBytes(UPSERT, 0, UPSERT.length, out, at);
  out[at++] = upsert ? 1 : 0;
  out[at] = 0;
  return out;
}

/** Writes the element `name` (with its 0) of `type` and `value` (its bytes) at `at`; returns where it ends. */
function putElement(out: Buffer, at: number, type: number, name: Buffer, value: Uint8Array): number {
  out[at++] = type;
  at += copyBytes(name, 0, name.length, out, at);
  return at + copyBytes(value, 0, value.length, out, at);
}

/**
 * Sends `group` (writes of one collection, none a rebuild) in `session`'s transaction, each run
 * of one command as one command, and counts them in `stats`. A refused statement throws a
 * StatementWriteError naming its place in `group`.
 */
export async function sendGroup(
  client: MongoClient,
  session: ClientSession,
  group: readonly DestinationWrite[],
  maxTimeMS: number,
  stats: ApplyStats,
  upsertInserts: boolean,
): Promise<void> {
  const ns = group[0]!.ns;
  for (let start = 0; start < group.length; ) {
    const command = commandOf(group[start]!, upsertInserts);
    let end = start + 1;
    while (end < group.length && commandOf(group[end]!, upsertInserts) === command) end++;
    const run = group.slice(start, end);
    const n = await sendStatements(client, session, command, ns, run.map((w) => statementOf(w, command)), maxTimeMS).catch((err: unknown) => {
      throw err instanceof StatementWriteError ? err.shifted(start) : err;
    });
    if (command === 'delete') stats.deleted += n;
    else if (command === 'insert') stats.inserted += n;
    else {
      for (const w of run) {
        if (w.kind === 'insert') stats.inserted++;
        else stats.updated++;
      }
      // An upsert always finds or creates its document; an update may find none.
      stats.missed += Math.max(0, run.length - n);
    }
    start = end;
  }
}
