// Applying a `$v: 2` diff to a document in memory, with the rules of the server's own applier
// (src/mongo/db/update/document_diff_applier.cpp, applyDiffToObject / applyDiffToArray), which
// secondaries and `applyOps` use to replay the entry:
//   object level: the old fields in their order, a `d` field dropped, a `u` field replaced in
//     place, an `i` field dropped (wherever it was), an `s<name>` field replaced by its sub-diff
//     applied if it has the type the sub-diff expects, else by null (a replay: a later entry
//     changed its type and will overwrite the null); then the `u` fields the object lacked and
//     all the `i` fields, appended in listed order. A sub-diff of an absent field does nothing;
//   array level: the new length is `l` if given, else the old length or one past the last
//     entry, whichever is larger; `u<k>` sets element k, `s<k>` applies a sub-diff to it (null on
//     a type mismatch or past the old end); other indices keep their element, or are null past
//     the old end.
// The server stores a document with its `_id` first, wherever the update put it (measured on
// 6.0.5: a diff whose `i` moves `_id` to the end replayed by applyOps, a replacement and a
// pipeline output with `_id` last all store it first), so the result has it first too: it is the
// post-image the server stores.
// The update translator replays deep diffs with it (update.ts, 'rebuild'), where a pipeline that
// does the same on the server would be nested deeper than the server accepts.
//
// Values are used as they are, never converted or copied: documents come decoded with
// `promoteValues: false`, so Int32 / Double / Long wrappers keep their BSON types. The input is
// not changed: each object or array the diff changes is built anew, the rest is shared.
// The limits are those of any JavaScript copy of a BSON document, shared with the rest of mmm:
// field names that are whole numbers come first in an object, and an embedded document that looks
// like a DBRef is decoded as one (an object to the server, so a sub-diff applies to it here too).

import { DBRef, type Document } from 'mongodb';
import { parseDocumentDiff, type ArrayDiff, type Diff, type DocumentDiff } from './diff-parse.ts';

/** `doc` with the raw diff `diff` (`o.diff` of an oplog entry) applied, as the server applies it. */
export function applyDocumentDiff(doc: Document, diff: Document): Document {
  return applyParsedDocumentDiff(doc, parseDocumentDiff(diff, 'diff'));
}

type FieldChange =
  | { kind: 'delete' }
  | { kind: 'update'; value: unknown }
  | { kind: 'insert' }
  | { kind: 'subDiff'; diff: Diff };

/** `doc` with a parsed diff applied: the document the server stores after the update. */
export function applyParsedDocumentDiff(doc: Document, diff: DocumentDiff): Document {
  const out = applyToObject(doc, diff);
  if (!Object.hasOwn(out, '_id') || Object.keys(out)[0] === '_id') return out;
  const { _id, ...rest } = out;
  return { _id, ...rest };
}

/** An object with a document diff applied (the object-level rules of the header). */
function applyToObject(doc: Document, diff: DocumentDiff): Document {
  // The parser already refused a field named in two sections, so each name has one change.
  const changes = new Map<string, FieldChange>([
    ...diff.deletes.map((name): [string, FieldChange] => [name, { kind: 'delete' }]),
    ...diff.updates.map(([name, value]): [string, FieldChange] => [name, { kind: 'update', value }]),
    ...diff.inserts.map(([name]): [string, FieldChange] => [name, { kind: 'insert' }]),
    ...diff.subDiffs.map(([name, sub]): [string, FieldChange] => [name, { kind: 'subDiff', diff: sub }]),
  ]);
  const out: Document = {};
  const updatedInPlace = new Set<string>();
  for (const [name, value] of Object.entries(doc)) {
    const change = changes.get(name);
    if (change === undefined) {
      put(out, name, value);
    } else if (change.kind === 'update') {
      put(out, name, change.value);
      updatedInPlace.add(name);
    } else if (change.kind === 'subDiff') {
      put(out, name, applySubDiff(value, change.diff));
    }
    // 'delete' and 'insert': the old value is dropped; an inserted field is appended below.
  }
  for (const [name, value] of [...diff.updates, ...diff.inserts]) {
    if (!updatedInPlace.has(name)) put(out, name, value);
  }
  return out;
}

/** A field's or element's value with a sub-diff applied, or null if it has the wrong type. */
function applySubDiff(value: unknown, diff: Diff): unknown {
  if (diff.kind === 'array') return Array.isArray(value) ? applyArrayDiff(value, diff) : null;
  if (value instanceof DBRef) return applyToObject(dbRefFields(value), diff);
  return isEmbeddedDocument(value) ? applyToObject(value, diff) : null;
}

function applyArrayDiff(array: readonly unknown[], diff: ArrayDiff): unknown[] {
  const lastEntry = diff.entries.at(-1)?.index ?? -1;
  const length = diff.length ?? Math.max(array.length, lastEntry + 1);
  const out: unknown[] = [];
  let next = 0;
  for (let index = 0; index < length; index++) {
    const entry = diff.entries[next]?.index === index ? diff.entries[next++] : undefined;
    const exists = index < array.length;
    if (entry === undefined) out.push(exists ? array[index] : null);
    else if ('update' in entry) out.push(entry.update);
    else out.push(exists ? applySubDiff(array[index], entry.subDiff) : null);
  }
  return out;
}

/** A plain object: what the driver decodes an embedded BSON document to (DBRefs aside). */
function isEmbeddedDocument(value: unknown): value is Document {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/** A DBRef's fields, in the order the driver writes them back ($ref, $id, $db, the others). */
function dbRefFields(ref: DBRef): Document {
  return { $ref: ref.collection, $id: ref.oid, ...(ref.db === undefined ? {} : { $db: ref.db }), ...ref.fields };
}

/** Adds a field; Object.defineProperty, not `out[name] =`, so a field named `__proto__` stays a field. */
function put(out: Document, name: string, value: unknown): void {
  Object.defineProperty(out, name, { value, enumerable: true, writable: true, configurable: true });
}
