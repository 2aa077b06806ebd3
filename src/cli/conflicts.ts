// `mmm conflicts`: the newest conflicts every server (or the one -s names) keeps in its
// mmm.conflicts, newest first: where each version lost, to which write, by which policy. A
// table, or --json. Exits 1 when a server could not be read (after listing the rest), 2 on bad
// input.

import { InvalidArgumentError, type Command } from 'commander';
import { collectConflicts, CONFLICTS_DEFAULTS } from '../status/conflicts.ts';
import { formatConflicts } from '../status/conflicts-format.ts';
import type { CliContext } from './context.ts';

interface ConflictsCommandOptions {
  json?: boolean;
  limit: number;
  server?: string;
}

export function registerConflicts(program: Command, context: CliContext): void {
  program
    .command('conflicts')
    .description('list the newest conflicts: the versions that lost, kept in mmm.conflicts on the server where they lost')
    .option('--json', 'print JSON (the shape is in the README), for scripts')
    .option('--limit <n>', 'how many to list, newest first, over all the servers', parseLimit, CONFLICTS_DEFAULTS.limit)
    .option('-s, --server <name>', 'only the conflicts this server keeps')
    .action(async (options: ConflictsCommandOptions) => {
      const topology = context.topology();
      const servers = options.server === undefined ? topology.servers : [context.server(options.server, '--server')];
      const report = await collectConflicts({ topology, servers, connect: context.connect, limit: options.limit });
      if (options.json) {
        context.io.stdout.write(`${JSON.stringify(report.conflicts, null, 2)}\n`);
        // stdout is the JSON array: what could not be read is said on stderr.
        for (const { error } of report.unreadable) context.io.stderr.write(`mmm: ${error}\n`);
      } else {
        context.io.stdout.write(formatConflicts(report, { allServers: options.server === undefined }));
      }
      if (report.unreadable.length > 0) context.exitCode = 1;
    });
}

function parseLimit(value: string): number {
  const limit = Number(value);
  if (/^\d+$/.test(value) && Number.isSafeInteger(limit) && limit >= 1) return limit;
  throw new InvalidArgumentError('expected a whole number of conflicts, 1 or more.');
}
