// Translating from bytes: the `o` of an update entry as the oplog holds it (../bson/lazy-document.ts,
// RawUpdate) in, the same update translateUpdate (./update.ts) makes of it decoded out, where it
// can be made without decoding: a replacement as its document's bytes, tagged (as an insert's),
// and a `$v: 2` diff that changes and removes top-level fields only (`u` and `d`, the classic
// modifier's case) as the bytes of its `$set` and `$unset`. Most updates are of that form (a
// `$set` or an `$inc` of top-level fields), and decoding each value to encode it again cost
// more than the rest of its translation. The values go as they came, which is also exacter: a
// sub-document whose field names are whole numbers keeps its field order, which a decoded
// JavaScript object would not. Anything else is left to translateUpdate, decoded.
//
// Read with loops over offsets (readElement), not callbacks or subarrays: this runs for every
// update replayed, and in a catch-up a first version with both cost more than decoding did.

import { BSON, type Document } from 'mongodb';
import { copyBytes, ELEMENT_SPAN, nameIs, readElement, SPAN_END, SPAN_NAME_END, SPAN_TYPE } from '../bson/raw.ts';
import { ENTRY_DECODE } from '../oplog/entry.ts';
import { TAG_FIELD } from '../replicate/tag.ts';
import { translateInsert, type UpdateSpec } from './update.ts';

const STRING = 0x02;
const DOCUMENT = 0x03;
const INT32 = 0x10;
const DOLLAR = 0x24;
const DOT = 0x2e;
const ID_NAME = Buffer.from('_id');
const V_NAME = Buffer.from('$v');
const DIFF_NAME = Buffer.from('diff');
const TAG_NAME = Buffer.from(TAG_FIELD);
const SET = Buffer.from('$set\0');
const UNSET = Buffer.from('$unset\0');

/**
 * More fields than this in a diff's `u` and `d` go to the decoded path: each name is compared
 * with the others (a duplicate, which decoding would collapse, must not reach the server twice).
 */
const MOST_FIELDS = 32;

/**
 * One span for every read, and the names of a diff's sections as pairs of offsets (where each
 * starts and ends), to find one twice: made once, since the translation is synchronous.
 */
const span = new Int32Array(ELEMENT_SPAN);
const names = new Int32Array(2 * MOST_FIELDS);
let nameCount = 0;

/** The update of an entry whose `o` is `raw`, and whether it holds the whole document; undefined where translateUpdate must decode it. */
export function translateUpdateBytes(raw: Uint8Array, tag: string): { spec: UpdateSpec; upsert: boolean } | undefined {
  const bytes = Buffer.isBuffer(raw) ? raw : Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
  let version = -1;
  let diffStart = -1;
  let diffEnd = -1;
  for (let at = 4; at < bytes.length - 1; at = span[SPAN_END]!) {
    readElement(bytes, at, bytes.length - 1, span);
    const type = span[SPAN_TYPE]!;
    const nameEnd = span[SPAN_NAME_END]!;
    if (nameIs(bytes, at + 1, nameEnd, ID_NAME)) {
      const fromBytes = translateInsert(raw, tag);
      return fromBytes && { spec: fromBytes.spec, upsert: true };
    }
    if (type === INT32 && version < 0 && nameIs(bytes, at + 1, nameEnd, V_NAME)) version = bytes.readInt32LE(nameEnd + 1);
    else if (type === DOCUMENT && diffStart < 0 && nameIs(bytes, at + 1, nameEnd, DIFF_NAME)) [diffStart, diffEnd] = [nameEnd + 1, span[SPAN_END]!];
    else return undefined;
  }
  if (version !== 2 || diffStart < 0) return undefined;
  const modifier = modifierBytes(bytes, diffStart, diffEnd, tag);
  return modifier && { spec: new BytesModifier(modifier), upsert: false };
}

/** A classic modifier sent as its bytes; `update` decodes them, for what reads it (a refused write's record). */
class BytesModifier {
  readonly kind = 'modifier' as const;
  private decoded: Document | undefined;

  constructor(readonly bytes: Uint8Array) {}

  get update(): Document {
    return (this.decoded ??= BSON.deserialize(this.bytes, ENTRY_DECODE));
  }
}

/**
 * `{$set: {<u's elements>, __mmm: tag}, $unset: {<d's names>: ""}}` of the diff at
 * `bytes[diffStart, diffEnd)` (`$unset` left out when it has none; a change to `__mmm` dropped,
 * as translateUpdate drops it), or undefined where translateUpdate must decide: the diff holds
 * another section, or none, or `u` before `d` (which the parser refuses), or a name that a
 * `$set` path would not reach as itself (empty, with a `.`, or starting with `$`), or a name
 * twice, or more than MOST_FIELDS names.
 */
function modifierBytes(bytes: Buffer, diffStart: number, diffEnd: number, tag: string): Buffer | undefined {
  let updates = -1;
  let deletes = -1;
  for (let at = diffStart + 4; at < diffEnd - 1; at = span[SPAN_END]!) {
    readElement(bytes, at, diffEnd - 1, span);
    const oneLetter = span[SPAN_NAME_END] === at + 2 && span[SPAN_TYPE] === DOCUMENT ? bytes[at + 1] : undefined;
    if (oneLetter === 0x64 && deletes < 0 && updates < 0) deletes = at + 3;
    else if (oneLetter === 0x75 && updates < 0) updates = at + 3;
    else return undefined;
  }
  if (updates < 0 && deletes < 0) return undefined;
  nameCount = 0;
  const unsetLength = deletes < 0 ? 0 : sectionLength(bytes, deletes, true);
  const setLength = updates < 0 ? 0 : sectionLength(bytes, updates, false);
  if (unsetLength < 0 || setLength < 0) return undefined;
  const tagLength = Buffer.byteLength(tag, 'utf8');
  const tagElement = 1 + TAG_NAME.length + 1 + 4 + tagLength + 1;
  const set = 4 + setLength + tagElement + 1;
  const unset = unsetLength > 0 ? 4 + unsetLength + 1 : 0;
  const length = 4 + 1 + SET.length + set + (unset > 0 ? 1 + UNSET.length + unset : 0) + 1;
  const out = Buffer.allocUnsafe(length);
  out.writeInt32LE(length, 0);
  let at = 4;
  out[at++] = DOCUMENT;
  at += copyBytes(SET, 0, SET.length, out, at);
  out.writeInt32LE(set, at);
  at += 4;
  if (updates >= 0) at = copySection(bytes, updates, out, at, false);
  out[at++] = STRING;
  at += copyBytes(TAG_NAME, 0, TAG_NAME.length, out, at);
  out[at++] = 0;
  out.writeInt32LE(tagLength + 1, at);
  at += 4;
  at += writeString(tag, tagLength, out, at);
  out[at++] = 0;
  out[at++] = 0;
  if (unset > 0) {
    out[at++] = DOCUMENT;
    at += copyBytes(UNSET, 0, UNSET.length, out, at);
    out.writeInt32LE(unset, at);
    at += 4;
    at = copySection(bytes, deletes, out, at, true);
    out[at++] = 0;
  }
  out[at] = 0;
  return out;
}

/**
 * How many bytes the elements of the section (a document at `start`) take in the modifier: as
 * they are, or for `$unset` each name as a string element of "" (its type, its name and 0, the
 * length 1 and the 0); the tag's left out. -1 if a name refuses the bytes path (modifierBytes).
 * Each name is added to `names`.
 */
function sectionLength(bytes: Buffer, start: number, asUnset: boolean): number {
  let length = 0;
  const last = start + bytes.readInt32LE(start) - 1;
  for (let at = start + 4; at < last; at = span[SPAN_END]!) {
    readElement(bytes, at, last, span);
    const nameEnd = span[SPAN_NAME_END]!;
    if (nameCount === MOST_FIELDS) return -1;
    for (let k = 0; k < nameCount; k++) if (sameBytes(bytes, at + 1, nameEnd, names[2 * k]!, names[2 * k + 1]!)) return -1;
    names[2 * nameCount] = at + 1;
    names[2 * nameCount + 1] = nameEnd;
    nameCount++;
    if (nameIs(bytes, at + 1, nameEnd, TAG_NAME)) continue;
    if (nameEnd === at + 1 || bytes[at + 1] === DOLLAR) return -1;
    for (let k = at + 1; k < nameEnd; k++) if (bytes[k] === DOT) return -1;
    length += asUnset ? 1 + (nameEnd - at - 1) + 1 + 4 + 1 : span[SPAN_END]! - at;
  }
  return length;
}

/** Copies the section at `start` into `out` at `at` as sectionLength counted it; returns where it ends. */
function copySection(bytes: Buffer, start: number, out: Buffer, at: number, asUnset: boolean): number {
  const last = start + bytes.readInt32LE(start) - 1;
  for (let from = start + 4; from < last; from = span[SPAN_END]!) {
    readElement(bytes, from, last, span);
    const nameEnd = span[SPAN_NAME_END]!;
    if (nameIs(bytes, from + 1, nameEnd, TAG_NAME)) continue;
    if (!asUnset) {
      at += copyBytes(bytes, from, span[SPAN_END]!, out, at);
      continue;
    }
    out[at++] = STRING;
    at += copyBytes(bytes, from + 1, nameEnd + 1, out, at);
    out.writeInt32LE(1, at);
    at += 4;
    out[at++] = 0;
  }
  return at;
}

/** Whether `bytes[a, aEnd)` and `bytes[b, bEnd)` are the same bytes. */
function sameBytes(bytes: Buffer, a: number, aEnd: number, b: number, bEnd: number): boolean {
  if (aEnd - a !== bEnd - b) return false;
  for (let k = 0; k < aEnd - a; k++) if (bytes[a + k] !== bytes[b + k]) return false;
  return true;
}

/** Writes `value` (`length` bytes of UTF-8) into `out` at `at`; a loop for ASCII (a tag is), where Buffer's write costs more. */
function writeString(value: string, length: number, out: Buffer, at: number): number {
  if (length !== value.length) return out.write(value, at, 'utf8');
  for (let k = 0; k < length; k++) out[at + k] = value.charCodeAt(k);
  return length;
}
