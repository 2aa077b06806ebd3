// Repairing: making the documents that differ on one side (the target) equal to the other
// side's (the preferred server's), as mmm's writes. Each transaction starts with the marker
// that names the preferred server as the writes' origin (../replicate/tag.ts), so no link sends
// them back to it, and a link the other way, out of the target, does not carry them either.
//
// The target may be written meanwhile (a live link applying a newer change of the same
// document, a user): a repair only overwrites the copy `verify` last read. In its transaction
// it reads the target's current documents first; one that is no longer that copy is left alone
// and counted as changed (a write between the read and the repair makes the transaction
// conflict, and it starts again, reading again). A newer change on the preferred side reaches
// the target through its link afterwards, on top of the repaired document.

import { BSON, type AnyBulkWriteOperation, type Document, type Filter, type MongoClient, type Timestamp, type WriteConcernSettings } from 'mongodb';
import { EXACT_DECODE, keyElements, orderedDocument, withoutElement, type OrderedDocument } from '../bson/raw.ts';
import { NAMESPACE_EXISTS, serverErrorCode } from '../apply/transient.ts';
import { writeMarker } from '../apply/writer.ts';
import type { Namespace } from '../namespace.ts';
import { readDocuments, sameBytes } from './documents.ts';
import { MARKER_COLLECTION, MMM_DATABASE, makeTag, RUN_ID, TAG_FIELD } from '../replicate/tag.ts';

/** One document to repair on the target. */
export interface Fix {
  key: string;
  /** A document of the `_id` element alone. */
  id: Buffer;
  /** The target's copy as verify read it, or undefined if it had none. */
  current: Buffer | undefined;
  /** The preferred server's copy, or undefined: then the target's is deleted. */
  wanted: Buffer | undefined;
}

export interface RepairCounts {
  /** Documents of the target replaced by the preferred server's. */
  replaced: number;
  /** Documents the target lacked, inserted. */
  inserted: number;
  /** Documents the preferred server lacks, deleted from the target. */
  deleted: number;
  /** Documents the target changed after verify read them: left as they are. */
  changed: number;
  /** Documents the driver cannot write back exactly as they are (decoded, they would serialize differently). */
  unwritable: number;
}

export interface RepairOptions {
  /** The preferred server's id: the writes' origin. */
  origin: string;
  /** The preferred server's position the copies are as of: their `__mmm` tag names it. */
  at: Timestamp;
  writeConcern: WriteConcernSettings;
  maxTimeMS: number;
  /** Documents per transaction. */
  chunk: number;
}

export const REPAIR_DEFAULTS = { writeConcern: { w: 'majority' }, maxTimeMS: 60_000, chunk: 500 } as const satisfies Partial<RepairOptions>;

/**
 * The marker's lane. Loops number theirs from 0 per partition; this one is written by this
 * process only (its `_id` holds RUN_ID), so it never shares a marker with a loop.
 */
const REPAIR_LANE = 0;

function emptyCounts(): RepairCounts {
  return { replaced: 0, inserted: 0, deleted: 0, changed: 0, unwritable: 0 };
}

/** Writes the preferred copies of `fixes` into `ns` on `target`. */
export async function repair(target: MongoClient, ns: Namespace, fixes: readonly Fix[], options: RepairOptions): Promise<RepairCounts> {
  // A transaction creating the marker collection would conflict with a concurrent one (../apply/writer.ts).
  await target
    .db(MMM_DATABASE)
    .createCollection(MARKER_COLLECTION)
    .catch((err: unknown) => {
      if (serverErrorCode(err) !== NAMESPACE_EXISTS) throw err;
    });
  const total = emptyCounts();
  const tag = makeTag(options.origin, options.at);
  const planned: Array<Fix & { document: OrderedDocument | undefined }> = [];
  for (const fix of fixes) {
    if (!fix.wanted) {
      planned.push({ ...fix, document: undefined });
      continue;
    }
    const document = tagged(fix.wanted, tag);
    if (document) planned.push({ ...fix, document });
    else total.unwritable++;
  }
  for (let at = 0; at < planned.length; at += options.chunk) {
    const counts = await transaction(target, ns, planned.slice(at, at + options.chunk), options);
    for (const k of Object.keys(total) as Array<keyof RepairCounts>) total[k] += counts[k];
  }
  return total;
}

/** The preferred copy, its own `__mmm` replaced by `tag` (last, as a replicated write has it). */
function tagged(wanted: Buffer, tag: string): OrderedDocument | undefined {
  const document = orderedDocument(withoutElement(wanted, keyElements(wanted).tag));
  if (document instanceof Map) document.set(TAG_FIELD, tag);
  else if (document) document[TAG_FIELD] = tag;
  return document;
}

async function transaction(target: MongoClient, ns: Namespace, fixes: ReadonlyArray<Fix & { document: OrderedDocument | undefined }>, options: RepairOptions): Promise<RepairCounts> {
  const collection = target.db(ns.db).collection<Document>(ns.coll);
  const { maxTimeMS } = options;
  const session = target.startSession();
  try {
    let counts = emptyCounts();
    await session.withTransaction(
      async () => {
        counts = emptyCounts();
        await writeMarker(target, session, { origin: options.origin, source: options.origin, lane: REPAIR_LANE, run: RUN_ID }, maxTimeMS);
        const now = await readDocuments(target, ns, fixes.map(idOf), { session, maxTimeMS });
        const deletes: AnyBulkWriteOperation<Document>[] = [];
        const writes: AnyBulkWriteOperation<Document>[] = [];
        for (const fix of fixes) {
          const held = now.get(fix.key);
          if (!sameBytes(held, fix.current)) {
            counts.changed++;
            continue;
          }
          const filter = { _id: idOf(fix) } as Filter<Document>;
          if (!fix.document) {
            if (held) {
              deletes.push({ deleteOne: { filter } });
              counts.deleted++;
            }
            continue;
          }
          writes.push(replacement(filter, fix.document));
          if (held) counts.replaced++;
          else counts.inserted++;
        }
        // Deletes first: an extra `_id` 1.0 must be gone before the missing `_id` 1 can come in
        // (the index takes them for one).
        const operations = [...deletes, ...writes];
        if (operations.length > 0) await collection.bulkWrite(operations, { ordered: true, session, maxTimeMS });
      },
      { writeConcern: options.writeConcern, maxCommitTimeMS: maxTimeMS },
    );
    return counts;
  } finally {
    await session.endSession();
  }
}

/** A replacement of the whole document, created if absent; a pipeline for a top-level `$` field name, which replaceOne refuses. */
function replacement(filter: Filter<Document>, document: OrderedDocument): AnyBulkWriteOperation<Document> {
  const names = document instanceof Map ? [...document.keys()] : Object.keys(document);
  if (names.some((name) => name.startsWith('$'))) {
    return { updateOne: { filter, update: [{ $replaceWith: { $literal: document } }], upsert: true } };
  }
  return { replaceOne: { filter, replacement: document as Document, upsert: true } };
}

function idOf(fix: Fix): unknown {
  return (BSON.deserialize(fix.id, EXACT_DECODE) as Document)._id;
}
