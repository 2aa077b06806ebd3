// Decoding an oplog entry from its BSON, reading only what the decoder (./decode.ts) uses.
//
// Beside its operation, an entry holds what the server needs for retryable writes and
// transactions: `lsid` (a UUID and a 32-byte binary), `txnNumber`, `stmtId`, `prevOpTime`, `t`,
// `v`. Of a plain insert, update or delete, none of that is read, and decoding it costs more than
// the rest (about 3 µs of the 5 an entry of a 1 KB document took here). So an insert, an update
// or a delete is read from the few fields the decoder uses, each directly; an insert's document
// and an update's `o` are left as bytes (../bson/lazy-document.ts), which the writer sends on as
// they are where it can (../apply/update-bytes.ts, ../apply/write-commands.ts). A transaction's `applyOps` is read
// the same way, operation by operation: its inserts' documents stay bytes too, so neither a
// user's transaction nor mmm's own (an echo, which is dropped, or a ring's relay, which is sent
// on) decodes them. Any other entry (a command, a no-op) is decoded whole.

import { Binary, BSON, Timestamp, UUID, type Document } from 'mongodb';
import { RawDocument, RawInsert, RawUpdate } from '../bson/lazy-document.ts';
import { forEachElement, nameIs } from '../bson/raw.ts';
import { ENTRY_DECODE, type OplogEntry } from './entry.ts';

/** The fields of an insert, update or delete entry the decoder reads, by their place in `Spans`. */
const CRUD_NAMES = ['ts', 'op', 'ns', 'o', 'o2', 'ui', 'wall', 'fromMigrate'];
const CRUD_FIELDS = CRUD_NAMES.map((name) => Buffer.from(name));
const [TS, OP, NS, O, O2, UI, WALL, FROM_MIGRATE] = CRUD_NAMES.map((name) => CRUD_NAMES.indexOf(name)) as [number, number, number, number, number, number, number, number];

const STRING = 0x02;
const DOCUMENT = 0x03;
const BINARY = 0x05;
const BOOLEAN = 0x08;
const DATE = 0x09;
const TIMESTAMP = 0x11;

/**
 * Where each of CRUD_FIELDS lies in an entry's bytes, three numbers a field (-1 where absent):
 * its type, where its value starts, where it ends. One array, not an object per field: this
 * runs for every entry read.
 */
type Spans = Int32Array;
const type = (spans: Spans, field: number) => spans[3 * field]!;
const valueStart = (spans: Spans, field: number) => spans[3 * field + 1]!;
const end = (spans: Spans, field: number) => spans[3 * field + 2]!;

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
  const spans: Spans = new Int32Array(3 * CRUD_FIELDS.length).fill(-1);
  forEachElement(bytes, (elementType, elementStart, nameEnd, elementValue, elementEnd) => {
    const field = fieldOf(CRUD_FIELDS, bytes, elementStart + 1, nameEnd);
    if (field < 0) return;
    spans[3 * field] = elementType;
    spans[3 * field + 1] = elementValue;
    spans[3 * field + 2] = elementEnd;
  });
  // `op` is a string of one character: its length (2, with the 0), then the character.
  const opCode = type(spans, OP) === STRING && bytes.readInt32LE(valueStart(spans, OP)) === 2 ? bytes[valueStart(spans, OP) + 4] : undefined;
  if (opCode === 0x63) return commandEntry(buf);
  const entry = opCode === 0x69 || opCode === 0x75 || opCode === 0x64 ? crudEntry(bytes, spans, opCode) : undefined;
  return entry ?? (BSON.deserialize(buf, ENTRY_DECODE) as OplogEntry);
}

/**
 * An insert, update or delete entry, read from its bytes: its position, namespace, wall time and
 * `fromMigrate` as a whole decode gives them; an insert's document and an update's `o` kept as
 * bytes, decoded when `o` is read (RawInsert, RawUpdate); an update's `o2`, a delete's `o`, and
 * the collection's `ui` of both (for their pre-images) decoded, each on its own, from a copy of
 * their few bytes (so that what is kept of them, an `_id`, does not hold the cursor's reply). An
 * insert's `ui` and `o2` are not read: the decoder does not use them. Undefined if a field has a
 * type or a value the server does not write (the caller decodes the entry whole, which decides).
 */
function crudEntry(bytes: Buffer, spans: Spans, opCode: number): OplogEntry | undefined {
  if (type(spans, TS) !== TIMESTAMP || type(spans, NS) !== STRING || type(spans, O) !== DOCUMENT) return undefined;
  const wall = type(spans, WALL);
  const fromMigrate = type(spans, FROM_MIGRATE);
  if ((wall >= 0 && wall !== DATE) || (fromMigrate >= 0 && fromMigrate !== BOOLEAN)) return undefined;
  const o2 = opCode === 0x69 ? -1 : type(spans, O2);
  const ui = opCode === 0x69 ? -1 : type(spans, UI);
  if ((o2 >= 0 && o2 !== DOCUMENT) || (ui >= 0 && (ui !== BINARY || !isUuid(bytes, valueStart(spans, UI))))) return undefined;
  if (fromMigrate >= 0 && bytes[valueStart(spans, FROM_MIGRATE)]! > 1) return undefined;
  // A string is its length with its 0, then its UTF-8 bytes and the 0.
  const ns = bytes.toString('utf8', valueStart(spans, NS) + 4, end(spans, NS) - 1);
  let entry: OplogEntry;
  if (opCode === 0x69) entry = new RawInsert(ns, new RawDocument(bytes.subarray(valueStart(spans, O), end(spans, O)), ENTRY_DECODE)) as RawInsert & OplogEntry;
  else if (opCode === 0x75) entry = new RawUpdate(ns, new RawDocument(bytes.subarray(valueStart(spans, O), end(spans, O)), ENTRY_DECODE)) as RawUpdate & OplogEntry;
  else entry = { op: 'd', ns, o: copiedDocument(bytes, valueStart(spans, O), end(spans, O)) } as OplogEntry;
  const ts = valueStart(spans, TS);
  // A timestamp is its increment, then its seconds, each 32 bits little-endian.
  entry.ts = new Timestamp({ i: bytes.readUInt32LE(ts), t: bytes.readUInt32LE(ts + 4) });
  if (o2 >= 0) entry.o2 = copiedDocument(bytes, valueStart(spans, O2), end(spans, O2));
  if (ui >= 0) entry.ui = collectionUuid(bytes, valueStart(spans, UI));
  if (wall >= 0) entry.wall = new Date(Number(bytes.readBigInt64LE(valueStart(spans, WALL))));
  if (fromMigrate >= 0) entry.fromMigrate = bytes[valueStart(spans, FROM_MIGRATE)] === 1;
  return entry;
}

/** The (sub)document `bytes[from, to)`, decoded from a copy of its bytes. */
function copiedDocument(bytes: Buffer, from: number, to: number): Document {
  return BSON.deserialize(Uint8Array.prototype.slice.call(bytes, from, to), ENTRY_DECODE);
}

/** Whether the binary value at `at` is a UUID (subtype 4, 16 bytes), which the server gives every collection. */
function isUuid(bytes: Buffer, at: number): boolean {
  return bytes.readInt32LE(at) === 16 && bytes[at + 4] === Binary.SUBTYPE_UUID;
}

/**
 * The UUID at `at`, as the decoder gives it, from a copy of its bytes. A collection's entries
 * follow each other, so the last one made is given again for the same bytes (nothing changes
 * the value of a UUID).
 */
function collectionUuid(bytes: Buffer, at: number): UUID {
  if (lastUuid === undefined || !sameBytes(bytes, at + 5, lastUuid.buffer, 16)) lastUuid = new UUID(Uint8Array.prototype.slice.call(bytes, at + 5, at + 21));
  return lastUuid;
}

let lastUuid: UUID | undefined;

function sameBytes(bytes: Buffer, at: number, other: Uint8Array, length: number): boolean {
  for (let k = 0; k < length; k++) if (bytes[at + k] !== other[k]) return false;
  return true;
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
 * as bytes in `raw`, `o` decoding it when first read (as crudEntry). Read field by field from
 * the bytes, and only the fields the decoder reads of an insert (as crudEntry, not its `ui` or
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
