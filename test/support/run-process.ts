// `mmm run` as a child process, as a user starts it, with its stderr (the log) collected as it
// comes, for tests of status, metrics and logs.

import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import type { Document } from 'mongodb';
import { MMM } from './cli.ts';
import { eventually } from './replication.ts';

export class RunProcess {
  readonly child: ChildProcessWithoutNullStreams;
  stderr = '';
  stdout = '';
  readonly exited: Promise<number | null>;

  /** `args` go before and after `run`: `[globalArgs, runArgs]`. */
  constructor(config: string, runArgs: readonly string[] = [], globalArgs: readonly string[] = []) {
    this.child = spawn(MMM, ['-c', config, ...globalArgs, 'run', ...runArgs], { stdio: 'pipe' });
    this.child.stderr.setEncoding('utf8').on('data', (s: string) => (this.stderr += s));
    this.child.stdout.setEncoding('utf8').on('data', (s: string) => (this.stdout += s));
    this.exited = new Promise((resolve) => this.child.once('exit', (code) => resolve(code)));
  }

  /** The JSON log lines, or those with message `msg`. */
  logs(msg?: string): Document[] {
    return this.stderr
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Document)
      .filter((l) => msg === undefined || l.msg === msg);
  }

  /** Waits until `count` lines with message `msg` have been logged. */
  async waitForLog(msg: string, count = 1, timeoutMs = 20_000): Promise<Document[]> {
    try {
      await eventually(`${count} '${msg}' log line(s)`, async () => this.logs(msg).length >= count, timeoutMs);
    } catch (err) {
      throw new Error(`${(err as Error).message}; the log:\n${this.stderr}`);
    }
    return this.logs(msg);
  }

  /** Sends `signal` and waits for the exit code (null when killed by the signal). */
  async stop(signal: NodeJS.Signals = 'SIGINT'): Promise<number | null> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    return this.exited;
  }
}
