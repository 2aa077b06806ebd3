// Runs the real `bin/mmm` as a child process, as a user would, and writes topology files.

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { MongoClient } from 'mongodb';
import { startReplicaSets, type ReplicaSet } from '../../scripts/replica-sets.ts';

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
  /** Another `mmm` to run than this clone's bin/mmm: an installed package's. */
  bin?: string;
}

export function runCli(args: readonly string[], options: CliOptions = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(options.bin ?? MMM, args, { cwd: options.cwd, stdio: 'pipe' });
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

/** The UUIDs of the documented topology. */
export const ID_A = '2c88ae84-7cb9-40f7-835d-c05e981f564d';
export const ID_B = '0d9c284b-b47c-40b5-932c-547b8685edd0';

/** Two replica sets named server_a and server_b in a topology file, as the documented session has them. */
export interface TwoServers {
  sets: ReplicaSet[];
  clients: MongoClient[];
  /** A temporary folder holding the topology file. */
  dir: string;
  /** The topology file's path. */
  config: string;
  /** Closes the clients, stops the servers and removes the folder. */
  close(): Promise<void>;
}

export async function startTwoServers(): Promise<TwoServers> {
  const sets = await startReplicaSets(2);
  const clients = sets.map((s) => s.client());
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mmm-cli-'));
  const config = writeTopology(path.join(dir, 'test.yml'), {
    server_a: { id: ID_A, uri: sets[0]!.uri },
    server_b: { id: ID_B, uri: sets[1]!.uri },
  });
  return {
    sets,
    clients,
    dir,
    config,
    close: async () => {
      await Promise.all(clients.map((c) => c.close()));
      await Promise.all(sets.map((s) => s.destroy()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
