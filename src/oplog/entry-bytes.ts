// Decoding an oplog entry from its BSON, reading only what the decoder (./decode.ts) uses.
//
// Beside its operation, an entry holds what the server needs for retryable writes and
// transactions: `lsid` (a UUID and a 32-byte binary), `txnNumber`, `stmtId`, `prevOpTime`, `t`,
// `v`. Of a plain insert, update or delete, none of that is read, and decoding it costs more than
// the rest (about 3 µs of the 5 an entry of a 1 KB document took here). So an update or a delete
// is decoded from a copy of its BSON that holds only the fields the decoder reads, and an insert
// from its few fields directly, its document left as bytes (../bson/lazy-document.ts), which the
// writer sends on as they are (../apply/write-commands.ts). A transaction's `applyOps` is read
// the same way, operation by operation: its inserts' documents stay bytes too, so neither a
// user's transaction nor mmm's own (an echo, which is dropped, or a ring's relay, which is sent
// on) decodes them. Any other entry (a command, a no-op) is decoded whole.

import { BSON, Timestamp, type Document } from 'mongodb';
import { RawDocument, RawInsert } from '../bson/lazy-document.ts';
import { forEachElement, nameIs } from '../bson/raw.ts';
import { ENTRY_DECODE, type OplogEntry } from './entry.ts';

/** The fields of an update or delete entry the decoder reads, by their place in `Spans`. */
const CRUD_NAMES = ['ts', 'op', 'ns', 'o', 'o2', 'ui', 'wall', 'fromMigrate'];
const CRUD_FIELDS = CRUD_NAMES.map((name) => Buffer.from(name));
const [TS, OP, NS, O, WALL, FROM_MIGRATE] = ['ts', 'op', 'ns', 'o', 'wall', 'fromMigrate'].map((name) => CRUD_NAMES.indexOf(name)) as [number, number, number, number, number, number];

const STRING = 0x02;
const DOCUMENT = 0x03;
const BOOLEAN = 0x08;
const DATE = 0x09;
const TIMESTAMP = 0x11;

/**
 * Where each of CRUD_FIELDS lies in an entry's bytes, four numbers a field (-1 where absent):
 * its type, where its element starts, where its value starts, where it ends. One array, not an
 * object per field: this runs for every entry read.
 */
type Spans = Int32Array;
const type = (spans: Spans, field: number) => spans[4 * field]!;
const start = (spans: Spans, field: number) => spans[4 * field + 1]!;
const valueStart = (spans: Spans, field: number) => spans[4 * field + 2]!;
const end = (spans: Spans, field: number) => spans[4 * field + 3]!;

/**
 * Which of `fields` the name `bytes[from, to)` is, or -1: compared as bytes, since making a
 * string of every name cost more than decoding the values.
 */
function fieldOf(fields: readonly Buffer[], bytes: Buffer, from: number, to: number): number {
  for (let field = 0; field < fields.length; field++) if (nameIs(bytes, from, to, fields[field]!)) return field;
  return -1;
}

/** The entry in `buf` (one BSON document), decoded with ENTRY_DECODE as far as it is read. */
export function decodeEntryBytes(buf: Uint8Array): OplogEntry {
  const bytes = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const spans: Spans = new Int32Array(4 * CRUD_FIELDS.length).fill(-1);
  let kept = 0;
  forEachElement(bytes, (elementType, elementStart, nameEnd, elementValue, elementEnd) => {
    const field = fieldOf(CRUD_FIELDS, bytes, elementStart + 1, nameEnd);
    if (field < 0) return;
    spans[4 * field] = elementType;
    spans[4 * field + 1] = elementStart;
    spans[4 * field + 2] = elementValue;
    spans[4 * field + 3] = elementEnd;
    kept += elementEnd - elementStart;
  });
  // `op` is a string of one character: its length (2, with the 0), then the character.
  const opCode = type(spans, OP) === STRING && bytes.readInt32LE(valueStart(spans, OP)) === 2 ? bytes[valueStart(spans, OP) + 4] : undefined;
  if (opCode === 0x69) return insertEntry(bytes, spans) ?? (BSON.deserialize(buf, ENTRY_DECODE) as OplogEntry);
  if (opCode === 0x63) return commandEntry(buf);
  if (opCode !== 0x75 && opCode !== 0x64) return BSON.deserialize(buf, ENTRY_DECODE) as OplogEntry;
  const lean = Buffer.allocUnsafe(4 + kept + 1);
  let at = 4;
  for (let field = 0; field < CRUD_FIELDS.length; field++) {
    if (type(spans, field) < 0) continue;
    bytes.copy(lean, at, start(spans, field), end(spans, field));
    at += end(spans, field) - start(spans, field);
  }
  lean[at] = 0;
  lean.writeInt32LE(lean.length, 0);
  return BSON.deserialize(lean, ENTRY_DECODE) as OplogEntry;
}

/**
 * An insert entry: its position, namespace, wall time and `fromMigrate`, read from their bytes,
 * and its document as bytes, decoded when `o` is read. Undefined if a field has a type the
 * server does not write (the caller decodes the entry whole).
 */
function insertEntry(bytes: Buffer, spans: Spans): OplogEntry | undefined {
  if (type(spans, TS) !== TIMESTAMP || type(spans, NS) !== STRING || type(spans, O) !== DOCUMENT) return undefined;
  const wall = type(spans, WALL);
  const fromMigrate = type(spans, FROM_MIGRATE);
  if ((wall >= 0 && wall !== DATE) || (fromMigrate >= 0 && fromMigrate !== BOOLEAN)) return undefined;
  // A string is its length with its 0, then its UTF-8 bytes and the 0.
  const ns = bytes.toString('utf8', valueStart(spans, NS) + 4, end(spans, NS) - 1);
  const entry = new RawInsert(ns, new RawDocument(bytes.subarray(valueStart(spans, O), end(spans, O)), ENTRY_DECODE)) as RawInsert & OplogEntry;
  const ts = valueStart(spans, TS);
  // A timestamp is its increment, then its seconds, each 32 bits little-endian.
  entry.ts = new Timestamp({ i: bytes.readUInt32LE(ts), t: bytes.readUInt32LE(ts + 4) });
  if (wall >= 0) entry.wall = new Date(Number(bytes.readBigInt64LE(valueStart(spans, WALL))));
  if (fromMigrate >= 0) entry.fromMigrate = bytes[valueStart(spans, FROM_MIGRATE)] === 1;
  return entry;
}

/**
 * `o.applyOps` left as each operation's BSON, for applyOpOf. The option takes any array of that
 * name, at any depth; an entry whose `o.applyOps` is not an array of documents is decoded again,
 * whole.
 */
const APPLY_OPS_RAW: BSON.DeserializeOptions = { ...ENTRY_DECODE, fieldsAsRaw: { applyOps: true } };

/** A command entry: decoded whole, but an `applyOps` one operation at a time (applyOpOf). */
function commandEntry(buf: Uint8Array): OplogEntry {
  const entry = BSON.deserialize(buf, APPLY_OPS_RAW) as OplogEntry;
  const ops: unknown = entry.o?.applyOps;
  if (!Array.isArray(ops) || !ops.every((op) => op instanceof Uint8Array)) return BSON.deserialize(buf, ENTRY_DECODE) as OplogEntry;
  entry.o.applyOps = ops.map((op: Uint8Array) => applyOpOf(Buffer.from(op.buffer, op.byteOffset, op.byteLength)));
  return entry;
}

/** The fields of an insert inside an `applyOps` that applyOpOf reads or passes over, by their place. */
const APPLY_OP_FIELDS = ['op', 'ns', 'o', 'fromMigrate', 'ui', 'o2'].map((name) => Buffer.from(name));

/**
 * One operation of an `applyOps`, as decoding it whole gives it, but an insert's document left
 * as bytes in `raw`, `o` decoding it when first read (as insertEntry). Read field by field from
 * the bytes, and only the fields the decoder reads of an insert (as insertEntry, not its `ui` or
 * `o2`): decoding a 1 KB document takes a few microseconds, so the rest must cost less. An
 * insert with a field applyOpOf does not know, or of a type the server does not write, is
 * decoded whole.
 */
function applyOpOf(bytes: Buffer): Document {
  let isInsert = false;
  let known = true;
  let ns: string | undefined;
  let o: Buffer | undefined;
  let fromMigrate: boolean | undefined;
  forEachElement(bytes, (elementType, elementStart, nameEnd, at, elementEnd) => {
    switch (fieldOf(APPLY_OP_FIELDS, bytes, elementStart + 1, nameEnd)) {
      case 0:
        // A one-character string: its length (2, with the 0), then the character.
        isInsert = elementType === STRING && bytes.readInt32LE(at) === 2 && bytes[at + 4] === 0x69;
        return !isInsert;
      case 1:
        if (elementType === STRING) ns = bytes.toString('utf8', at + 4, elementEnd - 1);
        else known = false;
        return;
      case 2:
        if (elementType === DOCUMENT) o = bytes.subarray(at, elementEnd);
        else known = false;
        return;
      case 3:
        if (elementType === BOOLEAN) fromMigrate = bytes[at] === 1;
        else known = false;
        return;
      case 4:
      case 5:
        return;
      default:
        known = false;
    }
  });
  if (!isInsert || !known || ns === undefined || o === undefined) return BSON.deserialize(bytes, ENTRY_DECODE);
  const op: RawInsert & { fromMigrate?: boolean } = new RawInsert(ns, new RawDocument(o, ENTRY_DECODE));
  if (fromMigrate !== undefined) op.fromMigrate = fromMigrate;
  return op as unknown as Document;
}
