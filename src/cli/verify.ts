// `mmm verify`: compares the source and destination collections of every link (or the one
// --src and --dst name), document by document, and with --repair makes the documents that
// differ equal to the preferred server's. A line per link (and its differences), or --json.
// Exits 0 when every link is equal, 1 when one is not (or could not be compared), 2 on bad input.

import type { Command } from 'commander';
import type { MongoClient } from 'mongodb';
import { UsageError } from '../errors.ts';
import { parseServerNamespace } from '../namespace.ts';
import type { ServerSpec } from '../topology.ts';
import { formatLink } from '../verify/format.ts';
import { allLinks, verifyLinks, type Connections, type SelectedLink } from '../verify/links.ts';
import type { CliContext } from './context.ts';

interface VerifyCommandOptions {
  src?: string;
  dst?: string;
  json?: boolean;
  repair?: boolean;
  prefer?: string;
}

export function registerVerify(program: Command, context: CliContext): void {
  program
    .command('verify')
    .description('compare the two collections of every link (or one), document by document, ignoring __mmm; exit 1 if any differ')
    .option('-s, --src <server/db.coll>', "the link's source collection (with --dst): verify this link only")
    .option('-d, --dst <server/db.coll>', "the link's destination collection (with --src)")
    .option('--json', 'print JSON (the shape is in the README), for scripts')
    .option('--repair', "make the documents that differ equal to those of --prefer's server, as mmm's writes")
    .option('--prefer <server>', 'with --repair: the server whose documents are kept, the source or the destination of each link verified')
    .action(async (options: VerifyCommandOptions) => {
      const topology = context.topology();
      const one = options.src !== undefined || options.dst !== undefined ? namedLink(context, options) : undefined;
      if (options.repair && options.prefer === undefined) throw new UsageError('--repair needs --prefer SERVER: the server whose documents are kept');
      if (options.prefer !== undefined && !options.repair) throw new UsageError('--prefer goes with --repair');
      const prefer = options.prefer === undefined ? undefined : context.server(options.prefer, '--prefer');
      if (prefer && one) refuseUnrelated(prefer, { source: one.source, sourceId: one.source.id, destination: one.destination, link: { src: one.src, dst: one.dst } });
      const servers = one ? [one.source, one.destination] : topology.servers;
      const report = await context.withClients(servers, async (clients) => {
        const byName = new Map<string, MongoClient>(servers.map((s, k) => [s.name, clients[k]!]));
        const connections: Connections = {
          client: (server) => byName.get(server.name)!,
          store: (server) => context.store(byName.get(server.name)!, server),
        };
        const selected = one ? [await existingLink(one, connections, options)] : await allLinks(topology, connections);
        if (prefer) for (const link of selected) refuseUnrelated(prefer, link);
        return verifyLinks(selected, connections, { ...(prefer && { prefer }) }, (link) => {
          if (!options.json) context.io.stdout.write(formatLink(link));
        });
      });
      if (options.json) context.io.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
      else if (report.links.length === 0) context.print('no links to verify');
      if (!report.equal) context.exitCode = 1;
    });
}

interface NamedLink {
  source: ServerSpec;
  destination: ServerSpec;
  src: string;
  dst: string;
}

/** The link --src and --dst name, checked against the topology (not yet against the links). */
function namedLink(context: CliContext, options: VerifyCommandOptions): NamedLink {
  if (options.src === undefined || options.dst === undefined) {
    throw new UsageError('--src and --dst go together: give both to verify one link, or neither to verify every link');
  }
  const src = parseServerNamespace(options.src, '--src');
  const dst = parseServerNamespace(options.dst, '--dst');
  return { source: context.server(src.server, '--src'), destination: context.server(dst.server, '--dst'), src: src.ns, dst: dst.ns };
}

async function existingLink(one: NamedLink, connections: Connections, options: VerifyCommandOptions): Promise<SelectedLink> {
  const config = await connections.store(one.destination).source(one.source.id);
  const link = config?.links.find((l) => l.src === one.src && l.dst === one.dst);
  if (!link) throw new UsageError(`there is no link from ${options.src} to ${options.dst}`);
  return { source: one.source, sourceId: one.source.id, destination: one.destination, link };
}

function refuseUnrelated(prefer: ServerSpec, selected: Omit<SelectedLink, 'link'> & { link: { src: string; dst: string } }): void {
  if (selected.source?.id === prefer.id || selected.destination.id === prefer.id) return;
  const label = `${selected.destination.name}/${selected.link.dst} <= ${selected.source?.name ?? selected.sourceId}/${selected.link.src}`;
  throw new UsageError(`--prefer ${prefer.name}: the link ${label} is neither from nor into it (verify one link with --src and --dst)`);
}
