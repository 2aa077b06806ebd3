// `mmm dump-config`: the servers of the topology, then what each replicates from the others.
// The output is the original's, byte for byte.

import type { Command } from 'commander';
import type { ReplicationConfigStore, SourceConfig } from '../config/store.ts';
import { describeUnauthorized } from '../check/privileges.ts';
import { MmmError, StoredConfigError } from '../errors.ts';
import { redactUri, type ServerSpec, type Topology } from '../topology.ts';
import type { CliContext } from './context.ts';

export function registerDumpConfig(program: Command, context: CliContext): void {
  program
    .command('dump-config')
    .description('show the servers and the collections each one replicates')
    .action(async () => {
      const topology = context.topology();
      const configs = await context.withClients(topology.servers, (clients) =>
        Promise.all(clients.map((client, i) => sourcesOn(context.store(client, topology.servers[i]!), topology.servers[i]!))),
      );
      context.io.stdout.write(formatReplicationConfig(topology, configs));
    });
}

async function sourcesOn(store: ReplicationConfigStore, server: ServerSpec): Promise<SourceConfig[]> {
  try {
    return await store.sources();
  } catch (err) {
    // The store cannot tell which server it reads; the user needs to know.
    if (err instanceof StoredConfigError) throw new StoredConfigError(`${server.name}: ${err.message}`, { cause: err });
    const unauthorized = describeUnauthorized(err);
    if (unauthorized) throw new MmmError(`${server.name}: ${unauthorized}`, { cause: err });
    throw err;
  }
}

/**
 * The dump, given each server's sources in topology order. A server's links are listed across
 * its sources in the order they were created; a source the topology no longer names shows as
 * its UUID; ops other than the default `iud` are shown after the link.
 */
export function formatReplicationConfig(topology: Topology, configs: readonly SourceConfig[][]): string {
  const lines = ['=== Server Config ==='];
  for (const server of topology.servers) lines.push(`${server.name} (${server.id}) => ${redactUri(server.uri)}`);
  lines.push('');
  topology.servers.forEach((server, i) => {
    lines.push(`=== ${server.name} Replication Config`);
    const links = (configs[i] ?? [])
      .flatMap(({ sourceId, links }) => links.map((link) => ({ sourceId, link })))
      .sort((a, b) => a.link.created.getTime() - b.link.created.getTime());
    for (const { sourceId, link } of links) {
      const source = topology.byId(sourceId)?.name ?? sourceId;
      const ops = link.ops === 'iud' ? '' : ` (${link.ops})`;
      lines.push(`     - ${link.dst} <= ${source}/${link.src}${ops}`);
    }
  });
  lines.push('');
  return `${lines.join('\n')}\n`;
}
