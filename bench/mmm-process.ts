// The real `mmm run` as a child process, as a user starts it: `node bin/mmm -c topology.yml run`.
// The benchmark measures it from outside, so mmm has its own process (and event loop) apart from
// the load generator, and its resident memory can be read from /proc.

import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const bin = path.join(root, 'bin', 'mmm');

export class MmmProcess {
  private readonly child: ChildProcess;
  private readonly exited: Promise<number | null>;
  private stderr = '';

  private constructor(config: string, extraNodeArgs: string[], runArgs: string[]) {
    this.child = spawn(process.execPath, [...extraNodeArgs, bin, '-c', config, '--log-level', 'info', 'run', ...runArgs], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    this.child.stderr!.on('data', (chunk: Buffer) => {
      this.stderr += chunk.toString();
      // MMM_BENCH_STDERR=file keeps mmm's log for a look afterwards.
      if (process.env.MMM_BENCH_STDERR) appendFileSync(process.env.MMM_BENCH_STDERR, chunk);
      if (this.stderr.length > 1_000_000) this.stderr = this.stderr.slice(-100_000);
    });
    // A bench run starts a dozen of these: each one's hook goes when it exits.
    const kill = () => this.child.kill('SIGKILL');
    process.once('exit', kill);
    this.exited = new Promise((resolve) =>
      this.child.once('exit', (code) => {
        process.off('exit', kill);
        resolve(code);
      }),
    );
  }

  /** Starts `mmm run` and waits until every link has started (its `link started` log line). */
  static async start(config: string, links: number, extraNodeArgs: string[] = [], runArgs: string[] = []): Promise<MmmProcess> {
    const mmm = new MmmProcess(config, extraNodeArgs, runArgs);
    const deadline = Date.now() + 30_000;
    while ((mmm.stderr.match(/"link started"/g) ?? []).length < links) {
      if (mmm.child.exitCode !== null) throw new Error(`mmm run exited at start: ${mmm.stderr}`);
      if (Date.now() > deadline) throw new Error(`mmm run did not start: ${mmm.stderr}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    return mmm;
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** Resident memory in MB: the current (VmRSS) and the peak since start (VmHWM). */
  memory(): { rssMB: number; peakMB: number } {
    const status = readFileSync(`/proc/${this.pid}/status`, 'utf8');
    const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
    return { rssMB: kb('VmRSS') / 1024, peakMB: kb('VmHWM') / 1024 };
  }

  /** CPU seconds (user + system) the process used so far, from /proc/<pid>/stat. */
  cpuSeconds(): number {
    return cpuSecondsOf(this.pid);
  }

  /** SIGTERM, as a user's Ctrl-C: mmm finishes its batch and exits 0. */
  async stop(): Promise<void> {
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 30_000);
    const code = await this.exited;
    clearTimeout(timer);
    if (code !== 0) throw new Error(`mmm run exited with ${code}: ${this.stderr.slice(-2000)}`);
    if (/"level":(50|60)/.test(this.stderr)) throw new Error(`mmm run logged errors: ${this.stderr.slice(-2000)}`);
  }
}

/** CPU seconds (user + system) of a process, from /proc/<pid>/stat. */
export function cpuSecondsOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the command name.
  return (Number(fields[11]) + Number(fields[12])) / 100;
}
