// The documented session (README, "The documented session"): its commands, and the transcript a
// terminal shows for them, byte for byte as the original printed it. Run against this clone's
// CLI (test/cli-session.test.ts) and against the installed package (test/cli-package.test.ts).

import assert from 'node:assert/strict';
import type { CliResult } from './cli.ts';
import { ID_A, ID_B } from './cli.ts';

export interface SessionStep {
  args: string[];
  /** What the user types at the question's prompt. */
  typed?: string;
}

export const DOCUMENTED_STEPS: readonly SessionStep[] = [
  { args: ['clear-config'], typed: 'y\n' },
  { args: ['dump-config'] },
  { args: ['replicate', '--src=server_a/test.foo', '--dst=server_b/test.foo'] },
  { args: ['replicate', '--src=server_a/test.bar', '--dst=server_b/test.bar'] },
  { args: ['replicate', '--src=server_b/test.foo', '--dst=server_a/test.foo'] },
  { args: ['replicate', '--src=server_b/test.bar', '--dst=server_a/test.bar'] },
  { args: ['dump-config'] },
];

/** The transcript of DOCUMENTED_STEPS with server_a at `uriA` and server_b at `uriB`. */
export function documentedTranscript(uriA: string, uriB: string): string {
  const servers = `=== Server Config ===
server_a (${ID_A}) => ${uriA}
server_b (${ID_B}) => ${uriB}
`;
  return `$ mmm -c test.yml clear-config
About to clear config on servers: ['server_a', 'server_b'], are you sure? (yN) y
Clear config for server_a
Clear config for server_b
$ mmm -c test.yml dump-config
${servers}
=== server_a Replication Config
=== server_b Replication Config

$ mmm -c test.yml replicate --src=server_a/test.foo --dst=server_b/test.foo
$ mmm -c test.yml replicate --src=server_a/test.bar --dst=server_b/test.bar
$ mmm -c test.yml replicate --src=server_b/test.foo --dst=server_a/test.foo
$ mmm -c test.yml replicate --src=server_b/test.bar --dst=server_a/test.bar
$ mmm -c test.yml dump-config
${servers}
=== server_a Replication Config
     - test.foo <= server_b/test.foo
     - test.bar <= server_b/test.bar
=== server_b Replication Config
     - test.foo <= server_a/test.foo
     - test.bar <= server_a/test.bar

`;
}

/**
 * Runs each step with `run` (which runs `mmm -c test.yml ARGS`), checks it succeeded quietly,
 * and returns the transcript of them all.
 */
export async function recordSession(
  steps: readonly SessionStep[],
  run: (args: string[], typed?: string) => Promise<CliResult>,
): Promise<string> {
  let text = '';
  for (const { args, typed } of steps) {
    const result = await run(args, typed);
    assert.equal(result.stderr, '', `stderr of ${args.join(' ')}`);
    assert.equal(result.code, 0, `exit code of ${args.join(' ')}`);
    text += transcript(args, result, typed);
  }
  return text;
}

/**
 * The command and its output as a terminal shows them: stdout, with what the user typed after
 * the question's prompt (the terminal echoes it, newline included).
 */
export function transcript(args: readonly string[], result: CliResult, typed?: string): string {
  let output = result.stdout;
  if (typed !== undefined) {
    assert.ok(output.includes('(yN) '), `no prompt in ${JSON.stringify(output)}`);
    output = output.replace('(yN) ', `(yN) ${typed}`);
  }
  return `$ mmm -c test.yml ${args.join(' ')}\n${output}`;
}
