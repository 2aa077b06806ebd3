// `mmm run`: replicate until SIGINT or SIGTERM. The first signal lets every loop finish the batch
// in flight and record its checkpoint, then the process exits 0; a second one exits at once.

import { InvalidArgumentError, type Command } from 'commander';
import type { W } from 'mongodb';
import { runReplication } from '../replicate/runner.ts';
import type { CliContext } from './context.ts';

interface RunOptions {
  slave?: string;
  writeConcern: W;
}

export function registerRun(program: Command, context: CliContext): void {
  program
    .command('run')
    .description('replicate: follow the oplog of every source and apply its changes, until SIGINT or SIGTERM')
    .option('-s, --slave <name>', 'only replicate into this server')
    .option('--write-concern <w>', "write concern of every write on a destination: 'majority' or a number of members", parseWriteConcern, 'majority')
    .action(async (options: RunOptions) => {
      const topology = context.topology();
      if (options.slave) context.server(options.slave, '--slave');
      const controller = new AbortController();
      const onSignal = () => {
        if (controller.signal.aborted) process.exit(130);
        context.logger().info('stopping: finishing the batch in flight');
        controller.abort();
      };
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
      try {
        const reports = await runReplication(
          {
            topology,
            logger: context.logger(),
            connect: context.connect,
            settings: { writeConcern: { w: options.writeConcern } },
            ...(options.slave ? { only: options.slave } : {}),
          },
          controller.signal,
        );
        if (!controller.signal.aborted) {
          // Every loop ended by itself: each has logged why.
          const failed = reports.filter((r) => r.outcome.state === 'failed').length;
          context.io.stderr.write(`mmm: no link left running (${failed} failed; see the log above)\n`);
          context.exitCode = 1;
        }
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
      }
    });
}

function parseWriteConcern(value: string): W {
  if (value === 'majority') return value;
  const members = Number(value);
  if (Number.isInteger(members) && members >= 1) return members;
  throw new InvalidArgumentError("expected 'majority' or a number of members (1 or more).");
}
