// Asking the user a question on stdin, as the original's raw_input did.

import { createInterface } from 'node:readline';
import type { CliIO } from './context.ts';

/**
 * Writes `question` (no newline: the answer follows it on the line) and reads one line of
 * stdin; undefined at end of input.
 */
export async function ask(io: CliIO, question: string): Promise<string | undefined> {
  io.stdout.write(question);
  // terminal: false leaves echoing to the terminal; the answer is read, never written back.
  const lines = createInterface({ input: io.stdin, terminal: false });
  for await (const line of lines) return line;
  return undefined;
}
