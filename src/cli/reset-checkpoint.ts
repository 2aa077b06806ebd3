// `mmm reset-checkpoint`: moves a destination's checkpoint for one source to the source's newest
// oplog entry, so that its next run starts from now. The way back after a lost oplog window
// (OplogRolledOverError): what happened on the source before this point is not replicated, so
// the collections are copied again after it (README, "Failure behaviour").

import type { Command } from 'commander';
import { UsageError } from '../errors.ts';
import { formatTs } from '../oplog/decode.ts';
import { OplogTailer } from '../oplog/tailer.ts';
import { DEFAULT_SETTINGS } from '../replicate/settings.ts';
import type { CliContext } from './context.ts';

export function registerResetCheckpoint(program: Command, context: CliContext): void {
  program
    .command('reset-checkpoint')
    .description("after a lost oplog window: make DST replicate SRC from SRC's newest oplog entry on (stop `run` first)")
    .requiredOption('-s, --src <server>', 'the source server (its name in the topology file)')
    .requiredOption('-d, --dst <server>', 'the destination server, which keeps the checkpoint')
    .action(async (options: { src: string; dst: string }) => {
      const source = context.server(options.src, '--src');
      const destination = context.server(options.dst, '--dst');
      if (source === destination) throw new UsageError(`--src and --dst are the same server (${source.name})`);
      await context.withClients([source, destination], async ([sourceClient, destinationClient]) => {
        const store = context.store(destinationClient!, destination);
        const config = await store.source(source.id);
        if (!config || config.links.length === 0) {
          throw new UsageError(`${destination.name} has no links from ${source.name}: nothing to reset`);
        }
        const newest = await new OplogTailer(sourceClient!, DEFAULT_SETTINGS).newest();
        await store.saveCheckpoint(source.id, newest);
        const was = config.checkpoint ? formatTs(config.checkpoint) : 'none';
        context.print(
          `Reset checkpoint of ${destination.name} for ${source.name} to ${formatTs(newest)}, the newest entry of ${source.name}'s oplog (was ${was})`,
        );
      });
    });
}
