// Runs the real `bin/mmm` as a child process, as a user would, and writes topology files.

import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const MMM = fileURLToPath(new URL('../../bin/mmm', import.meta.url));

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  /** What the user types; stdin ends after it (so no input at all is end of input at once). */
  input?: string;
  /** Working directory, so that `-c test.yml` reads like the documentation. */
  cwd?: string;
}

export function runCli(args: readonly string[], options: CliOptions = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(MMM, args, { cwd: options.cwd, stdio: 'pipe' });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
    // The child may exit before reading stdin (an error, or --yes): that is not a test failure.
    child.stdin.on('error', () => {});
    child.stdin.end(options.input ?? '');
  });
}

/** Writes a topology file in the documented format and returns its path. */
export function writeTopology(file: string, servers: Record<string, { id: string; uri: string }>): string {
  const text = Object.entries(servers)
    .map(([name, { id, uri }]) => `${name}:\n  id: '${id}'\n  uri: '${uri}'\n`)
    .join('');
  writeFileSync(file, text);
  return path.resolve(file);
}
