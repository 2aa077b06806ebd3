// `mmm replicate` and `mmm unreplicate`: add, change or remove one link, which the destination
// server stores (`replicate` also reaches the source, to check it can be read). Everything is
// checked before connecting, so bad input writes nothing.

import type { Command } from 'commander';
import { metadataNamespace, parseOps } from '../config/store.ts';
import { UsageError } from '../errors.ts';
import { parseServerNamespace } from '../namespace.ts';
import type { ServerSpec } from '../topology.ts';
import type { CliContext } from './context.ts';

interface LinkOptions {
  src: string;
  dst: string;
}

export function registerReplicate(program: Command, context: CliContext): void {
  program
    .command('replicate')
    .description('replicate a collection from one server into another; for an existing link, change its ops')
    .requiredOption('-s, --src <server/db.coll>', 'the collection changes come from')
    .requiredOption('-d, --dst <server/db.coll>', 'the collection they are applied to')
    .option('-o, --ops <ops>', 'the operations to replicate: one or more of i (insert), u (update), d (delete)', 'iud')
    .action(async (options: LinkOptions & { ops: string }) => {
      const link = resolveLink(context, options);
      const ops = parseOps(options.ops);
      // The source is reached too, though nothing is written there: a link from a server mmm
      // cannot read (unreachable, credentials refused, no oplog) is refused now, not at run time.
      const result = await context.withClients([link.destination, link.source], ([client]) =>
        context.store(client!, link.destination).addLink(link.source.id, { src: link.src, dst: link.dst, ops }),
      );
      context.logger().debug({ src: options.src, dst: options.dst, ops }, `link ${result}`);
    });
}

export function registerUnreplicate(program: Command, context: CliContext): void {
  program
    .command('unreplicate')
    .description('stop replicating a collection from one server into another')
    .requiredOption('-s, --src <server/db.coll>', 'the collection changes came from')
    .requiredOption('-d, --dst <server/db.coll>', 'the collection they were applied to')
    .action(async (options: LinkOptions) => {
      const link = resolveLink(context, options);
      const removed = await context.withClients([link.destination], ([client]) =>
        context.store(client!, link.destination).removeLink(link.source.id, link.src, link.dst),
      );
      if (!removed) throw new UsageError(`there is no link from ${options.src} to ${options.dst}`);
    });
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
  }
  return { source, destination, src: src.ns, dst: dst.ns };
}
