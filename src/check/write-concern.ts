// Whether a destination can acknowledge writes with `run --write-concern`: asked of the server
// itself, with an update that matches nothing, in the collection where mmm's own writes go
// (mmm.writes). The server still waits for the write concern, and refuses one it can never
// satisfy (w: 7 on a set of one member: UnsatisfiableWriteConcern) at once. Writes to `local`
// would not do: the server ignores a write concern there.

import { ObjectId, type MongoClient, type W } from 'mongodb';
import { MARKER_COLLECTION, MARKER_NAMESPACE, MMM_DATABASE } from '../replicate/tag.ts';
import { UNAUTHORIZED } from './privileges.ts';

export type WriteConcernVerdict =
  | { kind: 'ok' }
  /** The set can never acknowledge it, as configured: `reason` is the server's. */
  | { kind: 'impossible'; reason: string; dataBearingMembers: number }
  /** Not acknowledged in time: a member is down or lagging. */
  | { kind: 'timeout'; waitedMS: number }
  /** The user may not write where the probe writes; the privileges check says what is missing. */
  | { kind: 'unauthorized' };

/** UnsatisfiableWriteConcern, and WriteConcernFailed (the wtimeout expired). */
const UNSATISFIABLE = 100;
const WRITE_CONCERN_FAILED = 64;

export async function probeWriteConcern(client: MongoClient, w: W, timeoutMS: number): Promise<WriteConcernVerdict> {
  try {
    await client
      .db(MMM_DATABASE)
      .collection<{ _id: ObjectId }>(MARKER_COLLECTION)
      .updateOne({ _id: new ObjectId() }, { $set: { probe: true } }, { writeConcern: { w, wtimeoutMS: timeoutMS } });
    return { kind: 'ok' };
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (code === UNAUTHORIZED) return { kind: 'unauthorized' };
    if (code === UNSATISFIABLE) return { kind: 'impossible', reason: (err as Error).message, dataBearingMembers: await dataBearingMembers(client) };
    if (code === WRITE_CONCERN_FAILED) return { kind: 'timeout', waitedMS: timeoutMS };
    throw err;
  }
}

/** Members that can acknowledge a write, as `hello` lists them (hidden members are not listed). */
async function dataBearingMembers(client: MongoClient): Promise<number> {
  const hello = await client.db('admin').command({ hello: 1 });
  return ((hello.hosts as string[] | undefined)?.length ?? 0) + ((hello.passives as string[] | undefined)?.length ?? 0);
}

/** The verdict as the end of a line: `server_b: --write-concern 7 <this>`. */
export function describeWriteConcern(w: W, verdict: WriteConcernVerdict): string {
  switch (verdict.kind) {
    case 'ok':
      return `--write-concern ${w}: acknowledged`;
    case 'impossible':
      return (
        `--write-concern ${w} cannot be satisfied: ${verdict.reason} (the replica set has ${verdict.dataBearingMembers} ` +
        `data-bearing member${verdict.dataBearingMembers === 1 ? '' : 's'}; use 'majority' or a number up to that)`
      );
    case 'timeout':
      return `--write-concern ${w}: not acknowledged within ${verdict.waitedMS / 1000} s (a member down or lagging?): writes would wait`;
    case 'unauthorized':
      return `--write-concern ${w}: not checked (the user may not write to ${MARKER_NAMESPACE})`;
  }
}
