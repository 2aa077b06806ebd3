// Raw BSON: a document's top-level elements found in its bytes, without decoding it. What
// `verify` needs to compare two documents exactly (field order and numeric types count, so the
// bytes are compared) while leaving out mmm's bookkeeping field, and to write a document back
// exactly as it was read.
//
// The layout (https://bsonspec.org/spec.html): an int32 total length, elements, a 0 byte. An
// element is a type byte, its name as a C string, and a value whose length depends on the type.

import { createHash } from 'node:crypto';
import { BSON, type Document } from 'mongodb';

/** Where one top-level element lies in its document's bytes. */
export interface ElementSpan {
  type: number;
  /** Offset of its type byte: the element is `bytes[start, end)`. */
  start: number;
  /** Offset of its value, after the name's terminating 0. */
  valueStart: number;
  end: number;
}

/** A document's `_id` element and its `__mmm` element (undefined if it has none). */
export interface KeyElements {
  id: ElementSpan | undefined;
  tag: ElementSpan | undefined;
}

export class MalformedBsonError extends Error {}

const ID_NAME = Buffer.from('_id');
const TAG_NAME = Buffer.from('__mmm');

function int32(bytes: Uint8Array, at: number): number {
  if (at + 4 > bytes.length) throw new MalformedBsonError(`BSON ends inside a length at offset ${at}`);
  return bytes[at]! | (bytes[at + 1]! << 8) | (bytes[at + 2]! << 16) | (bytes[at + 3]! << 24);
}

/** Offset of the 0 that ends the C string starting at `at`. */
function cstringEnd(bytes: Uint8Array, at: number): number {
  const end = bytes.indexOf(0, at);
  if (end === -1) throw new MalformedBsonError(`BSON ends inside a name at offset ${at}`);
  return end;
}

/** Length of the value of type `type` starting at `at` (bsonspec.org; deprecated types included). */
function valueLength(bytes: Uint8Array, type: number, at: number): number {
  switch (type) {
    case 0x01: // double
    case 0x09: // UTC datetime
    case 0x11: // timestamp
    case 0x12: // int64
      return 8;
    case 0x02: // string
    case 0x0d: // JavaScript code
    case 0x0e: // symbol
      return 4 + int32(bytes, at);
    case 0x03: // embedded document
    case 0x04: // array
    case 0x0f: // code with scope: its int32 counts itself
      return int32(bytes, at);
    case 0x05: // binary: int32 length, subtype, bytes
      return 5 + int32(bytes, at);
    case 0x06: // undefined
    case 0x0a: // null
    case 0xff: // min key
    case 0x7f: // max key
      return 0;
    case 0x07: // ObjectId
      return 12;
    case 0x08: // boolean
      return 1;
    case 0x0b: // regular expression: pattern and options, two C strings
      return cstringEnd(bytes, cstringEnd(bytes, at) + 1) + 1 - at;
    case 0x0c: // DBPointer: a string, then 12 bytes
      return 4 + int32(bytes, at) + 12;
    case 0x10: // int32
      return 4;
    case 0x13: // decimal128
      return 16;
    default:
      throw new MalformedBsonError(`unknown BSON type 0x${type.toString(16)} at offset ${at}`);
  }
}

/**
 * Calls `visit` with each top-level element of the document in `bytes`, in order: its type,
 * where it starts (its type byte), where its name ends (the 0), where its value starts and where
 * it ends; stops when `visit` returns true. Offsets, not objects: this runs for every element of
 * every document verify reads. Throws MalformedBsonError if the bytes are not a document.
 */
export function forEachElement(bytes: Uint8Array, visit: (type: number, start: number, nameEnd: number, valueStart: number, end: number) => boolean | void): void {
  const length = int32(bytes, 0);
  if (length !== bytes.length || bytes[length - 1] !== 0) throw new MalformedBsonError(`a document of ${bytes.length} bytes says it has ${length}`);
  for (let at = 4; at < length - 1; ) {
    const type = bytes[at]!;
    const nameEnd = cstringEnd(bytes, at + 1);
    const end = elementEnd(bytes, at, type, nameEnd, length - 1);
    if (visit(type, at, nameEnd, nameEnd + 1, end) === true) return;
    at = end;
  }
}

/** Where the element at `at` (of `type`, its name ending at `nameEnd`) ends; throws MalformedBsonError past `last`. */
function elementEnd(bytes: Uint8Array, at: number, type: number, nameEnd: number, last: number): number {
  const end = nameEnd + 1 + valueLength(bytes, type, nameEnd + 1);
  if (end > last) throw new MalformedBsonError(`an element at offset ${at} runs past the end of its document`);
  return end;
}

/** The places in an element span (readElement): its type, where its name ends (the 0, its value starting after it), where it ends. */
export const SPAN_TYPE = 0;
export const SPAN_NAME_END = 1;
export const SPAN_END = 2;
export const ELEMENT_SPAN = 3;

/**
 * Reads the element that starts at `at` of a document whose elements end at `last` (the offset
 * of its terminating 0) into `span` (SPAN_TYPE, SPAN_NAME_END, SPAN_END): forEachElement's
 * step without a function called per element, for code that runs for every write; throws
 * MalformedBsonError where the element does not fit.
 */
export function readElement(bytes: Uint8Array, at: number, last: number, span: Int32Array): void {
  const type = bytes[at]!;
  const nameEnd = cstringEnd(bytes, at + 1);
  span[SPAN_TYPE] = type;
  span[SPAN_NAME_END] = nameEnd;
  span[SPAN_END] = elementEnd(bytes, at, type, nameEnd, last);
}

/** Every top-level element, in order, with its name. */
export function topLevelElements(bytes: Uint8Array): Array<ElementSpan & { name: string }> {
  const spans: Array<ElementSpan & { name: string }> = [];
  forEachElement(bytes, (type, start, nameEnd, valueStart, end) => {
    spans.push({ type, start, valueStart, end, name: Buffer.from(bytes.buffer, bytes.byteOffset + start + 1, nameEnd - start - 1).toString('utf8') });
  });
  return spans;
}

/**
 * Copies `from[start, end)` into `to` at `at`; returns how many bytes. A loop for a few bytes,
 * where Buffer's copy and set cost more than the copying (an element of an update, a name).
 */
export function copyBytes(from: Uint8Array, start: number, end: number, to: Uint8Array, at: number): number {
  if (end - start > 64) to.set(from.subarray(start, end), at);
  else for (let k = start; k < end; k++) to[at++] = from[k]!;
  return end - start;
}

/** Whether the element name at `[nameStart, nameEnd)` (forEachElement's `start + 1` and `nameEnd`) is `name`'s bytes. */
export function nameIs(bytes: Uint8Array, nameStart: number, nameEnd: number, name: Uint8Array): boolean {
  if (nameEnd - nameStart !== name.length) return false;
  for (let k = 0; k < name.length; k++) if (bytes[nameStart + k] !== name[k]) return false;
  return true;
}

/** The `_id` and `__mmm` elements of a document, in one pass over its top level. */
export function keyElements(bytes: Uint8Array): KeyElements {
  const found: KeyElements = { id: undefined, tag: undefined };
  forEachElement(bytes, (type, start, nameEnd, valueStart, end) => {
    if (found.id === undefined && nameIs(bytes, start + 1, nameEnd, ID_NAME)) found.id = { type, start, valueStart, end };
    else if (found.tag === undefined && nameIs(bytes, start + 1, nameEnd, TAG_NAME)) found.tag = { type, start, valueStart, end };
  });
  return found;
}

/**
 * The identity of an `_id` value as a string: its type byte and value bytes. Two documents have
 * the same key only if their `_id`s are the same BSON, type included (1 and 1.0 differ, though
 * the server's index takes them for equal).
 */
export function elementKey(bytes: Uint8Array, span: ElementSpan): string {
  return String.fromCharCode(span.type) + Buffer.from(bytes.buffer, bytes.byteOffset + span.valueStart, span.end - span.valueStart).toString('latin1');
}

/** Whether two elements hold the same type and value bytes (their names aside). */
export function sameValue(a: Uint8Array, aSpan: ElementSpan, b: Uint8Array, bSpan: ElementSpan): boolean {
  const length = aSpan.end - aSpan.valueStart;
  if (aSpan.type !== bSpan.type || bSpan.end - bSpan.valueStart !== length) return false;
  for (let k = 0; k < length; k++) if (a[aSpan.valueStart + k] !== b[bSpan.valueStart + k]) return false;
  return true;
}

/** `n` bytes of `a` from `i` and of `b` from `j` are the same (compared natively, nothing allocated). */
function sameBytesAt(a: Uint8Array, i: number, b: Uint8Array, j: number, n: number): boolean {
  return Buffer.prototype.compare.call(a, b, j, j + n, i, i + n) === 0;
}

/**
 * Whether two documents are the same BSON (element for element, in order, types included),
 * except for one element left out of each (`__mmm`, as keyElements found it). Each side's
 * content is its elements from offset 4 to the terminating 0, less the element left out.
 */
export function equalWithout(a: Uint8Array, aSkip: ElementSpan | undefined, b: Uint8Array, bSkip: ElementSpan | undefined): boolean {
  const aLast = a.length - 1;
  const bLast = b.length - 1;
  if (aLast - (aSkip ? aSkip.end - aSkip.start : 0) !== bLast - (bSkip ? bSkip.end - bSkip.start : 0)) return false;
  // The element left out is [from, to); without one, both are the end.
  const aFrom = aSkip ? aSkip.start : aLast;
  const aTo = aSkip ? aSkip.end : aLast;
  const bFrom = bSkip ? bSkip.start : bLast;
  const bTo = bSkip ? bSkip.end : bLast;
  let i = 4;
  let j = 4;
  for (;;) {
    if (i === aFrom) i = aTo;
    if (j === bFrom) j = bTo;
    if (i >= aLast) return true; // the contents have the same length: b is done too
    const n = Math.min((i < aFrom ? aFrom : aLast) - i, (j < bFrom ? bFrom : bLast) - j);
    if (!sameBytesAt(a, i, b, j, n)) return false;
    i += n;
    j += n;
  }
}

/** The document's bytes without one of its top-level elements (a copy). */
export function withoutElement(bytes: Uint8Array, span: ElementSpan | undefined): Buffer {
  if (!span) return Buffer.from(bytes);
  const rest = Buffer.concat([bytes.subarray(0, span.start), bytes.subarray(span.end)]);
  rest.writeInt32LE(rest.length, 0);
  return rest;
}

/** An inserted document as mmm writes it: its bytes, tagged; its `_id`; whether a top-level name starts with `$`. */
export interface TaggedBytes {
  bytes: Buffer;
  id: unknown;
  /**
   * The decoded `_id` is encoded back as the very bytes the document holds, so that a filter on
   * it (a later update or delete, an upsert on a replay) finds this document. Not so for a
   * sub-document with a name that is a whole number after another (a decoded object lists it
   * first, and the server compares sub-documents field by field, in order), nor for a string
   * that is not valid UTF-8: such a document is decoded instead, as its filters are.
   */
  exactId: boolean;
  dollarName: boolean;
  /** A second top-level `__mmm`: only the first is left out here, where decoding drops every one (the caller decodes). */
  repeatedTag: boolean;
}

/**
 * `bytes` with its top-level `__mmm` left out and `__mmm: tag` (a string) appended, the rest
 * byte for byte, field order included: the document `tagged` (../apply/update.ts) makes of the
 * decoded one, without decoding it, and without what decoding changes in values JavaScript does
 * not hold as they are (BSON undefined written back as null, a DBPointer as a DBRef document,
 * regular expression options sorted, duplicate names collapsed). One walk over the top level
 * finds the `_id` (decoded, for routing and filters) and any name starting with `$` (which a
 * replacement may not hold).
 */
export function taggedBytes(bytes: Uint8Array, tag: string): TaggedBytes {
  let id: unknown;
  let idFound = false;
  let exactId = false;
  let skip: ElementSpan | undefined;
  let dollarName = false;
  let repeatedTag = false;
  forEachElement(bytes, (type, start, nameEnd, valueStart, end) => {
    if (bytes[start + 1] === 0x24) dollarName = true;
    else if (!idFound && nameIs(bytes, start + 1, nameEnd, ID_NAME)) {
      idFound = true;
      // Decoded, then encoded again to see that it gives the same bytes. EXACT_DECODE checks
      // UTF-8: a string that is not valid throws, exactId stays false, and the caller decodes
      // the document instead.
      const own = documentOf(bytes, { type, start, valueStart, end });
      try {
        id = BSON.deserialize(own, EXACT_DECODE)._id;
        exactId = Buffer.compare(BSON.serialize({ _id: id }), own) === 0;
      } catch {}
    } else if (nameIs(bytes, start + 1, nameEnd, TAG_NAME)) {
      if (skip === undefined) skip = { type, start, valueStart, end };
      else repeatedTag = true;
    }
  });
  const value = Buffer.from(tag, 'utf8');
  const kept = bytes.length - 1 - (skip ? skip.end - skip.start : 0);
  // The element: type 0x02, the name and its 0, the string's length (its 0 counted), the string, its 0.
  const out = Buffer.allocUnsafe(kept + 1 + TAG_NAME.length + 1 + 4 + value.length + 1 + 1);
  if (skip) {
    out.set(bytes.subarray(0, skip.start), 0);
    out.set(bytes.subarray(skip.end, bytes.length - 1), skip.start);
  } else {
    out.set(bytes.subarray(0, bytes.length - 1), 0);
  }
  let at = kept;
  out[at++] = 0x02;
  out.set(TAG_NAME, at);
  at += TAG_NAME.length;
  out[at++] = 0;
  out.writeInt32LE(value.length + 1, at);
  at += 4;
  out.set(value, at);
  at += value.length;
  out[at++] = 0;
  out[at++] = 0;
  out.writeInt32LE(out.length, 0);
  return { bytes: out, id, exactId, dollarName, repeatedTag };
}

/** A document of the one element `bytes[span]`: for decoding one value on its own. */
export function documentOf(bytes: Uint8Array, span: ElementSpan): Buffer {
  const doc = Buffer.alloc(4 + (span.end - span.start) + 1);
  doc.writeInt32LE(doc.length, 0);
  doc.set(bytes.subarray(span.start, span.end), 4);
  return doc;
}

/**
 * How values are decoded to be written back as they were: numbers keep their BSON types (Int32,
 * Double, Long wrappers), binary data stays Binary, regular expressions stay BSONRegExp.
 */
export const EXACT_DECODE: BSON.DeserializeOptions = { promoteValues: false, promoteLongs: false, promoteBuffers: false, bsonRegExp: true };

/**
 * The value of a string element, or undefined if it is absent or not a string; bytes that are
 * not UTF-8 read as U+FFFD, as the decoder does without its UTF-8 check.
 */
export function stringElement(bytes: Uint8Array, span: ElementSpan | undefined): string | undefined {
  if (span?.type !== 0x02) return undefined;
  // A string's value: its length with the final 0, then its bytes and that 0.
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8', span.valueStart + 4, span.end - 1);
}

/** The value of one element, decoded with EXACT_DECODE. */
export function decodeValue(bytes: Uint8Array, span: ElementSpan): unknown {
  const decoded = BSON.deserialize(documentOf(bytes, span), EXACT_DECODE);
  return Object.values(decoded)[0];
}

/** A document (or the Map that stands for one) that the driver serializes to exactly these bytes. */
export type OrderedDocument = Document | Map<string, unknown>;

/**
 * The document in `bytes` as a value the driver serializes back to the same bytes, or undefined
 * if there is none. A JavaScript object lists field names that are whole numbers ("0", "12")
 * first, whatever their place in the document, so a (sub)document that has such a name after
 * another becomes a Map, which the serializer writes in insertion order.
 */
export function orderedDocument(bytes: Uint8Array): OrderedDocument | undefined {
  const plain = BSON.deserialize(bytes, EXACT_DECODE);
  if (serializesTo(plain, bytes)) return plain;
  const ordered = orderedMap(bytes);
  return serializesTo(ordered, bytes) ? ordered : undefined;
}

/**
 * Whether plain decoding (BSON.deserialize) may not write `bytes` back as they are, so that
 * orderedDocument should decide: a (sub)document has a field name that is a whole number, which
 * a JavaScript object lists first, or an `undefined` value, which the serializer writes as null.
 * A walk over the bytes, far cheaper than encoding the document again to compare.
 */
export function mayReorderWhenDecoded(bytes: Uint8Array, inArray = false): boolean {
  let found = false;
  forEachElement(bytes, (type, start, nameEnd, valueStart, end) => {
    if (type === 0x06 || (!inArray && isIndexName(bytes, start + 1, nameEnd))) found = true;
    else if (type === 0x03 || type === 0x04) found = mayReorderWhenDecoded(bytes.subarray(valueStart, end), type === 0x04);
    return found;
  });
  return found;
}

/** "0", "7", "12": a name a JavaScript object takes for an array index (up to 10 digits). */
function isIndexName(bytes: Uint8Array, nameStart: number, nameEnd: number): boolean {
  const length = nameEnd - nameStart;
  if (length === 0 || length > 10 || (bytes[nameStart] === 0x30 && length > 1)) return false;
  for (let k = nameStart; k < nameEnd; k++) if (bytes[k]! < 0x30 || bytes[k]! > 0x39) return false;
  return true;
}

function serializesTo(value: OrderedDocument, bytes: Uint8Array): boolean {
  return Buffer.compare(BSON.serialize(value), bytes) === 0;
}

function orderedMap(bytes: Uint8Array): Map<string, unknown> {
  const map = new Map<string, unknown>();
  for (const span of topLevelElements(bytes)) map.set(span.name, orderedValue(bytes, span));
  return map;
}

function orderedValue(bytes: Uint8Array, span: ElementSpan): unknown {
  if (span.type === 0x03) return orderedMap(bytes.subarray(span.valueStart, span.end));
  if (span.type === 0x04) {
    const array = bytes.subarray(span.valueStart, span.end);
    return topLevelElements(array).map((element) => orderedValue(array, element));
  }
  return decodeValue(bytes, span);
}

/** The names `$type` gives BSON types, for messages. */
const TYPE_NAMES: Record<number, string> = {
  0x01: 'double',
  0x02: 'string',
  0x03: 'object',
  0x04: 'array',
  0x05: 'binData',
  0x06: 'undefined',
  0x07: 'objectId',
  0x08: 'bool',
  0x09: 'date',
  0x0a: 'null',
  0x0b: 'regex',
  0x0c: 'dbPointer',
  0x0d: 'javascript',
  0x0e: 'symbol',
  0x0f: 'javascriptWithScope',
  0x10: 'int',
  0x11: 'timestamp',
  0x12: 'long',
  0x13: 'decimal',
  0xff: 'minKey',
  0x7f: 'maxKey',
};

export function typeName(type: number): string {
  return TYPE_NAMES[type] ?? `0x${type.toString(16)}`;
}

/**
 * A SHA-256 digest of the document without one element: stands for its content where keeping
 * the bytes would cost too much memory (a document waiting for its match in another batch).
 */
export function digestWithout(bytes: Uint8Array, skip: ElementSpan | undefined): Buffer {
  const hash = createHash('sha256');
  const last = bytes.length - 1;
  if (skip) hash.update(bytes.subarray(4, skip.start)).update(bytes.subarray(skip.end, last));
  else hash.update(bytes.subarray(4, last));
  return hash.digest();
}
