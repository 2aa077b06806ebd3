// The `__mmm` tag: how a write made by mmm is told apart from a user's, and where it came from.
//
// Shape: the string `<origin server UUID>:<t>:<i>`, where `Timestamp(t, i)` is the position of
// the source oplog entry being applied. Why not just the origin's UUID, as the original did:
// a `$v: 2` update diff lists only the fields that changed (OPLOG.md), so if mmm wrote the same
// tag a document already had, the destination's oplog entry would carry no `__mmm` at all and
// look like a user's write, which would then travel back to its origin. The position makes every
// tag mmm writes differ from the one before it, so `__mmm` is in every diff mmm causes, and it
// is deterministic, so replaying an entry after a crash writes the very same value.
// The tag is a scalar, not a sub-document, because the server logs a changed sub-document as a
// sub-diff holding only the changed sub-fields, which could leave the origin out.
//
// Deletes have no document to tag: mmm deletes in a transaction that first sets the tag on the
// document, then deletes it; the transaction's `applyOps` entry holds both (see markDeletes).

import { BSON, Binary, type Document, type Timestamp } from 'mongodb';
import type { Change } from '../oplog/entry.ts';

export const TAG_FIELD = '__mmm';

const TAG_PATTERN = /^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})(?::\d+:\d+)?$/;

export function makeTag(origin: string, ts: Timestamp): string {
  return `${origin}:${ts.t}:${ts.i}`;
}

/**
 * The origin server UUID a tag value names, or undefined if it is no tag. Also reads the
 * original MongoMultiMaster's tag, a bare BSON UUID, so documents it replicated keep their origin.
 */
export function tagOrigin(value: unknown): string | undefined {
  if (typeof value === 'string') return TAG_PATTERN.exec(value)?.[1];
  if (value instanceof Binary && (value.sub_type === 4 || value.sub_type === 3) && value.length() === 16) {
    const hex = value.toString('hex');
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  }
  return undefined;
}

/** A change with the server it was first written on, if mmm wrote it (undefined: a user did). */
export interface AttributedChange extends Change {
  origin?: string;
}

/** The tag an update sets, for each form of `o` (replacement, `$v: 2` diff, `$v: 1` modifiers). */
function updateTag(o: Document): unknown {
  if ('_id' in o) return o[TAG_FIELD];
  if (Number(o.$v) === 2) {
    const diff = (o.diff ?? {}) as Document;
    return (diff.u as Document | undefined)?.[TAG_FIELD] ?? (diff.i as Document | undefined)?.[TAG_FIELD];
  }
  return (o.$set as Document | undefined)?.[TAG_FIELD];
}

/** True for an update whose only change is setting the tag: mmm's mark before a delete. */
function isTagOnlyUpdate(change: Change): boolean {
  if (change.op !== 'u' || Number(change.o.$v) !== 2) return false;
  const diff = change.o.diff as Document;
  const sections = Object.keys(diff);
  if (sections.length !== 1) return false;
  const section = diff[sections[0]!] as Document;
  return (sections[0] === 'u' || sections[0] === 'i') && Object.keys(section).length === 1 && TAG_FIELD in section;
}

/** The document a change writes, as a key: equal keys for `_id`s equal as BSON (type and bytes). */
function documentKey(change: Change): string {
  const id = change.op === 'u' ? change.o2?._id : change.o._id;
  return `${change.ns}\u0000${Buffer.from(BSON.serialize({ v: id })).toString('base64')}`;
}

/**
 * Attributes each change to its origin. A tag-only update of a document followed, in the same
 * oplog entry and with no other change to that document in between, by its delete is mmm's
 * mark: it is dropped, and the delete inherits its origin. (mmm writes the marks of a run of
 * deletes first and the deletes after, two commands in one transaction; older versions wrote
 * each mark right before its delete. Both read the same.)
 */
export function attributeOrigins(changes: readonly Change[]): AttributedChange[] {
  // Pass 1: pair each delete with its mark. Keys are only computed within an entry (same `ts`)
  // that holds a tag-only update, so plain entries cost nothing here.
  const markOf = new Map<number, number>();
  const marks = new Set<number>();
  let pending = new Map<string, number>();
  for (let k = 0; k < changes.length; k++) {
    const change = changes[k]!;
    if (k > 0 && pending.size > 0 && !change.ts.equals(changes[k - 1]!.ts)) pending = new Map();
    if (isTagOnlyUpdate(change)) {
      pending.set(documentKey(change), k);
      continue;
    }
    if (pending.size === 0) continue;
    const key = documentKey(change);
    const mark = pending.get(key);
    if (mark === undefined) continue;
    pending.delete(key);
    if (change.op === 'd') {
      markOf.set(k, mark);
      marks.add(mark);
    }
  }
  const out: AttributedChange[] = [];
  for (let k = 0; k < changes.length; k++) {
    if (marks.has(k)) continue;
    const change = changes[k]!;
    const mark = markOf.get(k);
    if (mark !== undefined) {
      out.push({ ...change, origin: tagOrigin(updateTag(changes[mark]!.o)) });
      continue;
    }
    const tag = change.op === 'i' ? change.o[TAG_FIELD] : change.op === 'u' ? updateTag(change.o) : undefined;
    out.push({ ...change, origin: tagOrigin(tag) });
  }
  return out;
}
