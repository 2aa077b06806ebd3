// The replication config a destination server keeps about itself, in `local.mmm` as the
// original did (or `<metadata_db>.mmm`, replicated, to survive a failover): one document per
// source server,
//
//   {_id: <source UUID, BSON binary subtype 4>, checkpoint: <Timestamp, once run has set it>,
//    replication: [{dst: 'db.coll', src: 'db.coll', ops: 'iud', created: Date, since?: Timestamp,
//                   copying?: true}, ...],
//    status: <what the last run recorded about this loop; see ../status/record.ts>}
//
// Every change is one single-document update, which MongoDB applies atomically, so no reader
// ever sees half a change. `local` is not replicated, so the server refuses retryable writes
// there (they carry a txnNumber); the driver adds one only to single-document writes, hence
// updateMany and deleteMany on an `_id` filter, which touch at most one document just the same.

import { Binary, MongoServerError, Timestamp, UUID, type Collection, type Document, type MongoClient, type UpdateFilter } from 'mongodb';
import { StoredConfigError, UsageError } from '../errors.ts';
import { parseNamespace } from '../namespace.ts';
import type { ServerSpec } from '../topology.ts';
import { parseLoopStatus, type LoopStatusRecord } from '../status/record.ts';

/** One replicated collection: changes to `src` on the source server are applied to `dst` here. */
export interface Link {
  /** Namespace on the source server. */
  src: string;
  /** Namespace on this (the destination) server. */
  dst: string;
  /** Which operations to replicate: a non-empty subset of `iud` (insert, update, delete), in that order. */
  ops: string;
  created: Date;
  /**
   * For a link the source's checkpoint does not cover yet: the source's newest oplog entry when
   * `replicate` made it. Changes after it are replicated, and none before (README, "Links added
   * while `run` runs"). Removed once a run's checkpoint has passed it with the link applied.
   */
  since?: Timestamp;
  /**
   * Set while `replicate --copy` copies the source collection's documents (../copy/copy.ts): no
   * run follows the link until the copy ends, which removes it and sets `since` to the copy's
   * snapshot, in one update.
   */
  copying?: true;
}

/** What this server replicates from one source server. */
export interface SourceConfig {
  /** The source server's UUID, lower case with dashes. */
  sourceId: string;
  /** Where replication from this source stopped; absent until a run sets it. */
  checkpoint?: Timestamp;
  /** In the order they were first added. */
  links: Link[];
  /** What the last run recorded about its loop from this source; absent before any run. */
  status?: LoopStatusRecord;
}

export interface ConfigStoreOptions {
  database?: string;
  collection?: string;
}

/** What a running replication wants to hear from the store. */
export interface ConfigStoreHooks {
  /**
   * A checkpoint found no document to go in: this server no longer holds the links from
   * `sourceId` (a failover to a member whose `local.mmm` never had them, or clear-config).
   */
  onMissing?: (sourceId: string) => void;
}

export const CONFIG_STORE_DEFAULTS = {
  database: 'local',
  collection: 'mmm',
} as const satisfies Required<ConfigStoreOptions>;

/** Where `server` keeps its links and checkpoints: its `metadataDb`, or `local`. */
export function metadataStoreOptions(server: Pick<ServerSpec, 'metadataDb'>): ConfigStoreOptions {
  return server.metadataDb === undefined ? {} : { database: server.metadataDb };
}

/** The namespace of `server`'s metadata, `local.mmm` unless its topology entry says otherwise. */
export function metadataNamespace(server: Pick<ServerSpec, 'metadataDb'>): string {
  return `${server.metadataDb ?? CONFIG_STORE_DEFAULTS.database}.${CONFIG_STORE_DEFAULTS.collection}`;
}

const OPS = 'iud';
/** Duplicate key: another writer inserted the same source document first. */
const DUPLICATE_KEY = 11000;

interface SourceDocument {
  _id: Binary;
  checkpoint?: Timestamp;
  replication: Link[];
  status?: unknown;
}

/** `ops` in canonical order (`ui` -> `iu`); UsageError unless a non-empty subset of `iud`. */
export function parseOps(ops: string): string {
  const unknown = [...ops].filter((c) => !OPS.includes(c));
  if (ops === '' || unknown.length > 0) {
    throw new UsageError(`ops ${JSON.stringify(ops)}: expected one or more of i (insert), u (update), d (delete)`);
  }
  return [...OPS].filter((c) => ops.includes(c)).join('');
}

export class ReplicationConfigStore {
  private readonly collection: Collection<SourceDocument>;
  /** `local.mmm` unless told otherwise: for error messages. */
  private readonly namespace: string;
  private readonly onMissing: ((sourceId: string) => void) | undefined;

  constructor(client: MongoClient, options: ConfigStoreOptions & ConfigStoreHooks = {}) {
    const { database, collection } = { ...CONFIG_STORE_DEFAULTS, ...options };
    // In a replicated database, majority: a failover must not roll back a checkpoint or a link.
    // (`local` is this member's own; there the server's default applies.)
    const writeConcern = database === 'local' ? {} : { writeConcern: { w: 'majority' as const } };
    this.collection = client.db(database).collection<SourceDocument>(collection, writeConcern);
    this.namespace = `${database}.${collection}`;
    this.onMissing = options.onMissing;
  }

  /** Every source this server replicates from, in the order the server returns them. */
  async sources(): Promise<SourceConfig[]> {
    const documents = await this.collection.find({}).toArray();
    return documents.map((doc) => toSourceConfig(doc, this.namespace));
  }

  /**
   * Adds the link src -> dst from `sourceId`, or, if it exists, sets its ops in place (keeping
   * its position and `created`). Throws UsageError for a bad namespace or ops.
   */
  async addLink(sourceId: string, link: { src: string; dst: string; ops: string; since?: Timestamp; copying?: true }): Promise<'added' | 'updated'> {
    const _id = toBinary(sourceId);
    const src = parseNamespace(link.src, 'src').ns;
    const dst = parseNamespace(link.dst, 'dst').ns;
    const ops = parseOps(link.ops);
    const existing = { replication: { $elemMatch: { src, dst } } };
    // A concurrent writer may add the same link or source between our two updates; each retry
    // follows another writer's success, so this ends.
    for (;;) {
      const updated = await this.collection.updateMany({ _id, ...existing }, { $set: { 'replication.$.ops': ops } });
      if (updated.matchedCount > 0) return 'updated';
      try {
        await this.collection.updateMany(
          { _id, replication: { $not: existing.replication } },
          { $push: { replication: { dst, src, ops, created: new Date(), ...(link.since && { since: link.since }), ...(link.copying && { copying: true }) } } },
          { upsert: true },
        );
        return 'added';
      } catch (err) {
        if (!(err instanceof MongoServerError && err.code === DUPLICATE_KEY)) throw err;
      }
    }
  }

  /** Removes the link; the source's document goes with its last link. False if there was none. */
  async removeLink(sourceId: string, src: string, dst: string): Promise<boolean> {
    const _id = toBinary(sourceId);
    const pulled = await this.collection.updateMany({ _id }, { $pull: { replication: { src, dst } } });
    if (pulled.modifiedCount === 0) return false;
    // Only if still empty: a link added meanwhile keeps the document.
    await this.collection.deleteMany({ _id, replication: { $size: 0 } });
    return true;
  }

  /**
   * Ends the copy of the link src -> dst: it follows the source's oplog from `since` (the copy's
   * snapshot) on. False if the link is gone, or is not being copied.
   */
  async endCopy(sourceId: string, src: string, dst: string, since: Timestamp): Promise<boolean> {
    const updated = await this.collection.updateMany(
      { _id: toBinary(sourceId), replication: { $elemMatch: { src, dst, copying: true } } },
      { $set: { 'replication.$.since': since }, $unset: { 'replication.$.copying': '' } },
    );
    return updated.matchedCount > 0;
  }

  /** Removes every link and checkpoint this server holds. */
  async clear(): Promise<void> {
    await this.collection.deleteMany({});
  }

  /** What this server replicates from `sourceId`; undefined if it has no links from it. */
  async source(sourceId: string): Promise<SourceConfig | undefined> {
    const doc = await this.collection.findOne({ _id: toBinary(sourceId) });
    return doc ? toSourceConfig(doc, this.namespace) : undefined;
  }

  async checkpoint(sourceId: string): Promise<Timestamp | undefined> {
    const doc = await this.collection.findOne({ _id: toBinary(sourceId) });
    return doc ? toSourceConfig(doc, this.namespace).checkpoint : undefined;
  }

  /**
   * Records where replication from `sourceId` stopped; once its last link is gone, does nothing
   * but call onMissing. `covered` are links the run applied whose `since` the checkpoint has
   * passed: their `since` goes, in the same atomic update, but only if it is still the one the
   * run knew (a link re-made meanwhile keeps its own).
   */
  async saveCheckpoint(sourceId: string, ts: Timestamp, covered: readonly Link[] = []): Promise<void> {
    const pending = covered.filter((link) => link.since !== undefined);
    const update: Document =
      pending.length === 0
        ? { $set: { checkpoint: ts } }
        : { $set: { checkpoint: ts }, $unset: Object.fromEntries(pending.map((_, k) => [`replication.$[l${k}].since`, ''])) };
    const arrayFilters = pending.map((link, k) => ({ [`l${k}.src`]: link.src, [`l${k}.dst`]: link.dst, [`l${k}.since`]: link.since }));
    const result = await this.collection.updateMany({ _id: toBinary(sourceId) }, update as UpdateFilter<SourceDocument>, arrayFilters.length > 0 ? { arrayFilters } : {});
    if (result.matchedCount === 0) this.onMissing?.(sourceId);
  }

  /**
   * Replaces the run's status record of the loop from `sourceId`, its heartbeat set to this
   * server's clock; does nothing once the source's last link is gone. A pipeline update, for
   * `$$NOW`; `$literal` keeps a `$` in an error message from reading as a field path.
   */
  async saveStatus(sourceId: string, status: Omit<LoopStatusRecord, 'heartbeat'>): Promise<void> {
    await this.collection.updateMany({ _id: toBinary(sourceId) }, [
      { $set: { status: { $mergeObjects: [{ $literal: status }, { heartbeat: '$$NOW' }] } } },
    ]);
  }
}

function toBinary(sourceId: string): Binary {
  if (!UUID.isValid(sourceId)) throw new UsageError(`source id ${JSON.stringify(sourceId)} is not a UUID`);
  return new UUID(sourceId);
}

/** Checks a stored document, so that a hand-edited one fails with a clear message, not later. */
function toSourceConfig(doc: SourceDocument, namespace: string): SourceConfig {
  const { _id, checkpoint, replication, status: recorded } = doc as Partial<Record<keyof SourceDocument, unknown>>;
  const fail = (problem: string) =>
    new StoredConfigError(`${namespace} holds a document mmm cannot read (${JSON.stringify(doc)}): ${problem}`);
  if (!(_id instanceof Binary && _id.sub_type === Binary.SUBTYPE_UUID && _id.length() === 16)) {
    throw fail('_id is not a UUID (BSON binary subtype 4)');
  }
  if (checkpoint !== undefined && !(checkpoint instanceof Timestamp)) throw fail('checkpoint is not a Timestamp');
  if (!Array.isArray(replication) || !replication.every(isLink)) {
    throw fail('replication is not a list of {dst, src, ops, created}');
  }
  const links = replication.map(({ src, dst, ops, created, since, copying }) => ({ src, dst, ops, created, ...(since && { since }), ...(copying && { copying }) }));
  const status = parseLoopStatus(recorded);
  return { sourceId: _id.toUUID().toHexString(), ...(checkpoint && { checkpoint }), links, ...(status && { status }) };
}

function isLink(value: unknown): value is Link {
  const link = value as Partial<Record<keyof Link, unknown>> | null;
  return (
    typeof link === 'object' &&
    link !== null &&
    typeof link.src === 'string' &&
    typeof link.dst === 'string' &&
    typeof link.ops === 'string' &&
    link.created instanceof Date &&
    (link.since === undefined || link.since instanceof Timestamp) &&
    (link.copying === undefined || link.copying === true)
  );
}
