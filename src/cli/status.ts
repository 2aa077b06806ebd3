// `mmm status`: what replication is doing, link by link, whether `run` is running or not: its
// state, checkpoint, lag and counters as the run recorded them, and each source's oplog window.
// A table, or --json. Exits 1 when a server could not be reached (after reporting the rest).

import type { Command } from 'commander';
import { LinksCache } from '../status/links-cache.ts';
import { collectStatus } from '../status/report.ts';
import { formatStatus } from '../status/format.ts';
import type { CliContext } from './context.ts';

export function registerStatus(program: Command, context: CliContext): void {
  program
    .command('status')
    .description("each link's state, checkpoint, lag and applied writes, and each server's oplog window")
    .option('--json', 'print JSON (the shape is in the README), for scripts and monitoring')
    .action(async (options: { json?: boolean }) => {
      const report = await collectStatus({ topology: context.topology(), connect: context.connect, linksMemory: new LinksCache() });
      context.io.stdout.write(options.json ? `${JSON.stringify(report, null, 2)}\n` : formatStatus(report));
      if (report.servers.some((s) => !s.reachable)) context.exitCode = 1;
    });
}
