// The source's documents as they were before each update or delete: MongoDB's pre-images
// (`changeStreamPreAndPostImages`, 6.0+). With one, a destination can tell whether a write was
// made on the document it holds (./resolve.ts). The source keeps them in
// `config.system.preimages`, one per update or delete, until its oplog no longer holds the
// entry; turning them on costs each update or delete on the source one more small write.

import { BSON, type Binary, type Document, type MongoClient, type Timestamp } from 'mongodb';
import { serverErrorCode } from '../apply/transient.ts';
import { topLevelElements } from '../bson/raw.ts';
import type { PreImageKey } from '../oplog/entry.ts';

const NAMESPACE_NOT_FOUND = 26;
const NAMESPACE_EXISTS = 48;

/** Makes each collection keep pre-images from now on, creating it (empty) if it does not exist. */
export async function keepPreImages(client: MongoClient, namespaces: readonly string[]): Promise<void> {
  for (const ns of namespaces) {
    const dot = ns.indexOf('.');
    const db = client.db(ns.slice(0, dot));
    const name = ns.slice(dot + 1);
    const option = { changeStreamPreAndPostImages: { enabled: true } };
    try {
      await db.command({ collMod: name, ...option });
    } catch (err) {
      if (serverErrorCode(err) !== NAMESPACE_NOT_FOUND) throw err;
      await db.createCollection(name, option).catch(async (created: unknown) => {
        // Created meanwhile (by a user's first insert): then it needs the option too.
        if (serverErrorCode(created) !== NAMESPACE_EXISTS) throw created;
        await db.command({ collMod: name, ...option });
      });
    }
  }
}

/** The pre-images the source still holds for `keys`, as BSON, by `preImageId`. */
export async function readPreImages(client: MongoClient, keys: readonly PreImageKey[]): Promise<Map<string, Buffer>> {
  const found = new Map<string, Buffer>();
  if (keys.length === 0) return found;
  const cursor = client
    .db('config')
    .collection('system.preimages')
    .find({ _id: { $in: keys } } as Document, { raw: true, batchSize: keys.length, promoteValues: false });
  for await (const raw of cursor) {
    const bytes = raw as unknown as Buffer;
    let id: string | undefined;
    let image: Buffer | undefined;
    for (const element of topLevelElements(bytes)) {
      if (element.name === '_id') id = preImageId(BSON.deserialize(bytes.subarray(element.valueStart, element.end), { promoteValues: false }) as PreImageKey);
      else if (element.name === 'preImage') image = bytes.subarray(element.valueStart, element.end);
    }
    if (id !== undefined && image !== undefined) found.set(id, image);
  }
  return found;
}

/** The key readPreImages gives a pre-image. */
export function preImageId(key: { nsUUID: Binary; ts: Timestamp; applyOpsIndex: unknown }): string {
  return `${Buffer.from(key.nsUUID.buffer).toString('hex')}:${key.ts.toString()}:${String(key.applyOpsIndex)}`;
}
