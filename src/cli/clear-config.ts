// `mmm clear-config`: removes the replication config (links and checkpoints) from every server,
// or from the one given with -s, after asking. Prompt and output are the original's.

import type { Command } from 'commander';
import type { CliContext } from './context.ts';
import { UsageError } from '../errors.ts';
import { onlyServer } from './options.ts';
import { ask } from './prompt.ts';

export function registerClearConfig(program: Command, context: CliContext): void {
  program
    .command('clear-config')
    .description('remove every link and checkpoint from all servers, or from one')
    .option('-s, --slave <name>', "only this server (its name in the topology file; the original's name for --only)")
    .option('--only <name>', 'only this server (its name in the topology file)')
    .option('--yes', 'do not ask for confirmation')
    .action(async (options: { slave?: string; only?: string; yes?: boolean }) => {
      const topology = context.topology();
      const only = onlyServer(options, (message) => new UsageError(message));
      const servers = only === undefined ? topology.servers : [context.server(only, options.only === undefined ? '--slave' : '--only')];
      if (!options.yes) {
        const names = pythonList(servers.map((s) => s.name));
        const answer = await ask(context.io, `About to clear config on servers: ${names}, are you sure? (yN) `);
        if (answer !== 'y' && answer !== 'Y') {
          // At end of input the user typed no line, so the prompt's line is still open.
          context.io.stdout.write(answer === undefined ? '\nAborted.\n' : 'Aborted.\n');
          context.exitCode = 1;
          return;
        }
      }
      await context.withClients(servers, async (clients) => {
        for (const [i, client] of clients.entries()) {
          await context.store(client, servers[i]!).clear();
          context.print(`Clear config for ${servers[i]!.name}`);
        }
      });
    });
}

const PYTHON_ESCAPES: Record<string, string> = { '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t' };

/** A list of strings as Python 2's repr shows it, since the original printed one: ['a', 'b']. */
function pythonList(items: readonly string[]): string {
  return `[${items.map(pythonRepr).join(', ')}]`;
}

function pythonRepr(text: string): string {
  // Python quotes with ' unless the text holds a ' and no ".
  const quote = text.includes("'") && !text.includes('"') ? '"' : "'";
  const escaped = [...text].map((c) => PYTHON_ESCAPES[c] ?? (c === quote ? `\\${c}` : c)).join('');
  return `${quote}${escaped}${quote}`;
}
