// `mmm replicate` and `mmm unreplicate`: add, change or remove one link, which the destination
// server stores (`replicate` also reaches the source, to check it can be read). Everything is
// checked before connecting, so bad input writes nothing; what only the servers can tell (a
// time-series collection) is checked before anything is written.

import type { Command } from 'commander';
import type { MongoClient } from 'mongodb';
import { metadataNamespace, parseOps, type ReplicationConfigStore } from '../config/store.ts';
import { copyCollection, COPY_DEFAULTS } from '../copy/copy.ts';
import { copyIndexes } from '../copy/indexes.ts';
import { readCopy, removeCopy, type CopyMode } from '../copy/state.ts';
import { OplogTailer } from '../oplog/tailer.ts';
import { DEFAULT_SETTINGS } from '../replicate/settings.ts';
import { MMM_DATABASE } from '../replicate/tag.ts';
import { UsageError } from '../errors.ts';
import { parseNamespace, parseServerNamespace } from '../namespace.ts';
import type { ServerSpec } from '../topology.ts';
import type { CliContext } from './context.ts';
import { progressDisplay } from './copy-progress.ts';

interface LinkOptions {
  src: string;
  dst: string;
}

interface CopyFlags {
  copy?: boolean;
  indexes?: boolean;
  copyMode?: string;
}

export function registerReplicate(program: Command, context: CliContext): void {
  program
    .command('replicate')
    .description('replicate a collection from one server into another; for an existing link, change its ops')
    .requiredOption('-s, --src <server/db.coll>', 'the collection changes come from')
    .requiredOption('-d, --dst <server/db.coll>', 'the collection they are applied to')
    .option('-o, --ops <ops>', 'the operations to replicate: one or more of i (insert), u (update), d (delete)', 'iud')
    .option('--copy', "copy the source collection's documents first, then follow its changes from the copy's snapshot")
    .option('--indexes', "with --copy: build the source collection's indexes on the destination first")
    .option('--copy-mode <mode>', 'with --copy, when the destination holds documents: replace (the source\'s win) or keep (the destination\'s stay)')
    .action(async (options: LinkOptions & CopyFlags & { ops: string }) => {
      const link = resolveLink(context, options);
      const ops = parseOps(options.ops);
      const mode = copyMode(options);
      // The source is reached too, though nothing is written there: a link from a server mmm
      // cannot read (unreachable, credentials refused, no oplog) is refused now, not at run time.
      const result = await context.withClients([link.destination, link.source], async ([dstClient, srcClient]) => {
        await refuseTimeSeries(srcClient!, '--src', link.source, link.src);
        await refuseTimeSeries(dstClient!, '--dst', link.destination, link.dst);
        const store = context.store(dstClient!, link.destination);
        if (mode !== undefined) {
          await copyLink(context, { link, ops, mode, indexes: options.indexes === true, store, source: srcClient!, destination: dstClient! });
          return { added: 'copied', live: await liveRun(dstClient!, store, link.source.id) };
        }
        // A new link replicates what is written from now on: a running (or later) `run` goes back
        // to this position for it, however far its checkpoint has gone (../config/store.ts).
        const since = await new OplogTailer(srcClient!, DEFAULT_SETTINGS).newest();
        const added = await store.addLink(link.source.id, { src: link.src, dst: link.dst, ops, since });
        const live = await liveRun(dstClient!, store, link.source.id);
        return { added, live };
      });
      context.logger().debug({ src: options.src, dst: options.dst, ops }, `link ${result.added}`);
      if (result.live) context.io.stderr.write(`mmm: ${result.live}: it follows this change within a few seconds\n`);
    });
}

/** The copy mode --copy and --copy-mode ask for; undefined without --copy. Throws UsageError. */
function copyMode(options: CopyFlags): CopyMode | undefined {
  if (!options.copy) {
    if (options.indexes || options.copyMode !== undefined) throw new UsageError(`--${options.indexes ? 'indexes' : 'copy-mode'} goes with --copy`);
    return undefined;
  }
  if (options.copyMode === undefined) return 'empty';
  if (options.copyMode === 'replace' || options.copyMode === 'keep') return options.copyMode;
  throw new UsageError(`--copy-mode ${JSON.stringify(options.copyMode)}: expected replace or keep`);
}

interface CopyRequest {
  link: ResolvedLink;
  ops: string;
  mode: CopyMode;
  indexes: boolean;
  store: ReplicationConfigStore;
  source: MongoClient;
  destination: MongoClient;
}

/**
 * `replicate --copy`: makes the link, marked as being copied, copies, and lets it follow the
 * oplog (../copy/copy.ts); run again after an interruption, goes on with the copy begun.
 */
async function copyLink(context: CliContext, request: CopyRequest): Promise<void> {
  const { link, ops, store, source, destination } = request;
  const key = { source: link.source.id, src: link.src, dst: link.dst };
  const existing = (await store.source(link.source.id))?.links.find((l) => l.src === link.src && l.dst === link.dst);
  let begun = await readCopy(destination, key);
  if (begun && !existing) {
    // A copy whose link is gone (clear-config, or a link removed by hand): what it recorded says
    // nothing of the destination now, so it starts over.
    await removeCopy(destination, key);
    begun = undefined;
  }
  if (existing && !existing.copying) {
    // A copy that ended but was not forgotten yet: it is complete, the link follows the oplog.
    if (begun) return removeCopy(destination, key);
    throw new UsageError(
      `${link.source.name}/${link.src} is replicated to ${link.destination.name}/${link.dst} already: --copy makes a new link (to compare the two sides: mmm verify)`,
    );
  }
  if (!begun && !(await collectionExists(source, link.src))) {
    throw new UsageError(`${link.source.name}/${link.src} does not exist: there is nothing to copy (make the link without --copy)`);
  }
  if (!begun && request.mode === 'empty' && (await holdsDocuments(destination, link.dst))) {
    throw new UsageError(
      `${link.destination.name}/${link.dst} holds documents already: give --copy-mode replace (the source's versions win) or --copy-mode keep (the destination's stay)`,
    );
  }
  await store.addLink(link.source.id, { src: link.src, dst: link.dst, ops, copying: true });
  if (request.indexes) await copyIndexes(source, link.src, destination, link.dst);
  const logger = context.logger();
  const display = progressDisplay(context.io.stderr, logger);
  try {
    await copyCollection(
      { key, mode: request.mode, store, source: { name: link.source.name, client: source }, destination: { name: link.destination.name, client: destination } },
      {
        ...COPY_DEFAULTS,
        writeConcern: DEFAULT_SETTINGS.writeConcern,
        logger,
        onProgress: (progress) => display.update(progress),
        onWarning: (message) => context.io.stderr.write(`mmm: warning: ${message}\n`),
      },
    );
  } finally {
    display.stop();
  }
}

async function collectionExists(client: MongoClient, ns: string): Promise<boolean> {
  const { db, coll } = parseNamespace(ns);
  return (await client.db(db).listCollections({ name: coll }, { nameOnly: true }).toArray()).length > 0;
}

async function holdsDocuments(client: MongoClient, ns: string): Promise<boolean> {
  const { db, coll } = parseNamespace(ns);
  return (await client.db(db).collection(coll).findOne({}, { projection: { _id: 1 } })) !== null;
}

export function registerUnreplicate(program: Command, context: CliContext): void {
  program
    .command('unreplicate')
    .description('stop replicating a collection from one server into another')
    .requiredOption('-s, --src <server/db.coll>', 'the collection changes came from')
    .requiredOption('-d, --dst <server/db.coll>', 'the collection they were applied to')
    .action(async (options: LinkOptions) => {
      const link = resolveLink(context, options);
      const { removed, live } = await context.withClients([link.destination], async ([client]) => {
        const store = context.store(client!, link.destination);
        // Asked before the link goes: with its last link, the record of the run goes too.
        const live = await liveRun(client!, store, link.source.id);
        const removed = await store.removeLink(link.source.id, link.src, link.dst);
        // A copy begun for it (finished or not) goes too: a later --copy starts afresh.
        await removeCopy(client!, { source: link.source.id, src: link.src, dst: link.dst });
        return { removed, live };
      });
      if (!removed) throw new UsageError(`there is no link from ${options.src} to ${options.dst}`);
      if (live) context.io.stderr.write(`mmm: ${live}: it stops this link within a few seconds\n`);
    });
}

/**
 * A time-series collection's writes are logged on its buckets collection, `db.system.buckets.<name>`
 * (OPLOG.md), never on its own namespace, so a link would carry nothing, or bucket documents
 * that are the server's internal format. A collection created later is not checked here: `run`
 * warns about it (../replicate/commands.ts).
 */
async function refuseTimeSeries(client: MongoClient, label: string, server: ServerSpec, ns: string): Promise<void> {
  const { db, coll } = parseNamespace(ns);
  const [info] = await client.db(db).listCollections({ name: coll }, { nameOnly: false }).toArray();
  if (info?.type === 'timeseries') {
    throw new UsageError(
      `${label} ${server.name}/${ns} is a time-series collection: its writes are logged on ${db}.system.buckets.${coll}, which mmm cannot replicate exactly`,
    );
  }
}

/**
 * Who runs replication into this destination from `sourceId` now, as `a running \`mmm run\`
 * (pid P on H)`, if a run's status record there is fresh: its last heartbeat less than two of
 * its intervals old, by the destination's clock, which wrote it (../status/record.ts).
 */
async function liveRun(client: MongoClient, store: ReplicationConfigStore, sourceId: string): Promise<string | undefined> {
  const status = (await store.source(sourceId))?.status;
  if (!status || status.state === 'stopped' || status.state === 'failed') return undefined;
  const hello = await client.db('admin').command({ hello: 1 });
  const now = hello.localTime instanceof Date ? hello.localTime.getTime() : Date.now();
  if (now - status.heartbeat.getTime() > 2 * status.every * 1000) return undefined;
  return `a running \`mmm run\` (pid ${status.pid} on ${status.host})`;
}

interface ResolvedLink {
  source: ServerSpec;
  destination: ServerSpec;
  /** Namespaces, `db.coll`. */
  src: string;
  dst: string;
}

/** The link --src and --dst describe, checked against the topology. Throws UsageError or ConfigError. */
function resolveLink(context: CliContext, options: LinkOptions): ResolvedLink {
  context.topology(); // a broken topology file is reported first, whatever else is wrong
  const src = parseServerNamespace(options.src, '--src');
  const dst = parseServerNamespace(options.dst, '--dst');
  const source = context.server(src.server, '--src');
  const destination = context.server(dst.server, '--dst');
  if (source === destination && src.ns === dst.ns) {
    throw new UsageError(`--src and --dst are the same collection (${options.src}): a link needs two`);
  }
  if (source === destination) {
    // A write is never applied to the server it came from (loop breaking): such a link would copy nothing.
    throw new UsageError(`--src and --dst are on the same server (${source.name}): mmm replicates between servers`);
  }
  // With metadata in a replicated database, its collection is an ordinary one to the checks above.
  for (const [label, server, ns] of [['--src', source, src.ns], ['--dst', destination, dst.ns]] as const) {
    if (ns === metadataNamespace(server)) {
      throw new UsageError(`${label} ${JSON.stringify(`${server.name}/${ns}`)}: mmm keeps its links and checkpoints there, so it cannot be replicated`);
    }
    if (ns.startsWith(`${MMM_DATABASE}.`)) {
      // Its markers tell mmm's writes from users' (../replicate/tag.ts): replicating them would blur that.
      throw new UsageError(`${label} ${JSON.stringify(`${server.name}/${ns}`)}: the database ${MMM_DATABASE} is mmm's own (its write markers and refused writes), so it cannot be replicated`);
    }
  }
  return { source, destination, src: src.ns, dst: dst.ns };
}
