// The tags of a marker's deletes. A delete leaves no document to carry its tag, so the marker
// before a run of writes that holds deletes lists their tags (`d` of the marker document, as a
// string so that the oplog logs it whole rather than as a diff of the last list), for whoever
// reads that transaction later: a server relaying the deletes (../oplog/decode.ts), or one
// looking up a document's last version (../conflict/last-write.ts). Apart from ./tag.ts, which
// `mmm --help` loads, because this needs the driver's BSON.

import { BSON, type Document } from 'mongodb';

/** Makes a marker's list of deletes from `[_id, tag]` pairs; `seq` makes each list differ from the last. */
export function markerDeletes(seq: number, deletes: ReadonlyArray<readonly [unknown, string]>): string {
  return JSON.stringify([seq, deletes.map(([id, tag]) => [deleteKey(id), tag])]);
}

/** The key a marker's list gives a deleted document's `_id` (its canonical Extended JSON). */
export function deleteKey(id: unknown): string {
  return BSON.EJSON.stringify({ _id: id }, { relaxed: false });
}

/** The tags of deletes a marker operation (as logged inside an `applyOps`) lists, by deleteKey. */
export function loggedMarkerDeletes(op: { op: string; o: Document }): Map<string, string> | undefined {
  const o = op.o;
  const list: unknown = op.op === 'i' ? o.d : (o.diff?.u?.d ?? o.diff?.i?.d);
  if (typeof list !== 'string') return undefined;
  try {
    const [, pairs] = JSON.parse(list) as [number, Array<[string, string]>];
    return new Map(pairs);
  } catch {
    return undefined;
  }
}
