// Documents as the server stores them, so that comparisons see field order and numeric types.
import assert from 'node:assert/strict';
import { BSON, type Collection, type Document } from 'mongodb';

/** A document as the server stores it: its BSON bytes. */
export async function stored(collection: Collection<Document>, id: unknown): Promise<Uint8Array> {
  const raw = await collection.find({ _id: id as never }, { raw: true }).next();
  assert.ok(raw, `document ${String(id)} is missing`);
  return raw as unknown as Uint8Array;
}

/** Every document of a collection, as BSON bytes, in `_id` order. */
export async function storedAll(collection: Collection<Document>): Promise<Uint8Array[]> {
  return (await collection.find({}, { raw: true }).sort({ _id: 1 }).toArray()) as unknown as Uint8Array[];
}

/** The BSON bytes without the top-level `__mmm` element, and that element's value. */
export function splitTag(bytes: Uint8Array): { rest: Buffer; tag: unknown } {
  for (const [, nameOffset, nameLength, offset, length] of BSON.onDemand.parseToElements(bytes)) {
    if (Buffer.from(bytes.subarray(nameOffset, nameOffset + nameLength)).toString() !== '__mmm') continue;
    const rest = Buffer.concat([bytes.subarray(0, nameOffset - 1), bytes.subarray(offset + length)]);
    rest.writeInt32LE(rest.length, 0);
    return { rest, tag: BSON.deserialize(bytes).__mmm };
  }
  return { rest: Buffer.from(bytes), tag: undefined };
}

/** A document's bytes as extended JSON, types shown, for failure messages. */
export const show = (bytes: Uint8Array) => BSON.EJSON.stringify(BSON.deserialize(bytes, { promoteValues: false }));
