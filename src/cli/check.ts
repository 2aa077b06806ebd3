// `mmm check`: a preflight of the topology and its links, one line per finding, or --json.
// Exits 1 when something would make `run` fail (a failure), 0 otherwise, warnings included.

import type { Command } from 'commander';
import type { W } from 'mongodb';
import type { Finding } from '../check/preflight.ts';
import type { CliContext } from './context.ts';
import { parseWriteConcern } from './options.ts';

/** How long a destination may take to acknowledge the write concern probe, at most. */
const WRITE_CONCERN_WAIT_MS = 5_000;

export function registerCheck(program: Command, context: CliContext): void {
  program
    .command('check')
    .description('check the servers and links before a run: reachable, versions, privileges, write concern, oplog headroom, clocks')
    .option('--write-concern <w>', "the write concern `run` will use: 'majority' or a number of members", parseWriteConcern, 'majority')
    .option('--json', 'print JSON: {"ok", "findings": [{"level", "server", "check", "message"}]}')
    .action(async (options: { writeConcern: W; json?: boolean }) => {
      const topology = context.topology();
      const { preflight } = await import('../check/preflight.ts');
      const findings = await preflight({
        topology,
        connect: context.connect,
        writeConcern: options.writeConcern,
        writeConcernTimeoutMS: Math.min(WRITE_CONCERN_WAIT_MS, context.options.connectTimeout * 1000),
      });
      const ok = !findings.some((f) => f.level === 'failure');
      context.io.stdout.write(options.json ? `${JSON.stringify({ ok, findings }, null, 2)}\n` : formatFindings(findings));
      if (!ok) context.exitCode = 1;
    });
}

const LABELS: Record<Finding['level'], string> = { ok: 'ok', warning: 'warning', failure: 'FAILURE' };

/** One line per finding, `LEVEL  server: message`, then a line that counts them. */
export function formatFindings(findings: readonly Finding[]): string {
  const width = Math.max(...Object.values(LABELS).map((l) => l.length));
  const lines = findings.map((f) => `${LABELS[f.level].padEnd(width)}  ${f.server ? `${f.server}: ` : ''}${f.message}`);
  const count = (level: Finding['level'], word: string) => {
    const n = findings.filter((f) => f.level === level).length;
    return `${n} ${word}${n === 1 ? '' : 's'}`;
  };
  const failures = findings.some((f) => f.level === 'failure');
  lines.push(`${count('failure', 'failure')}, ${count('warning', 'warning')}${failures ? ': something would fail' : ''}`);
  return `${lines.join('\n')}\n`;
}

/**
 * What `run` checks at start (cheaply: a few commands per server): the servers it needs are
 * reachable replica set members, its user has the privileges its links need, and each
 * destination acknowledges `writeConcern`. Warnings are logged; the first thing that would make
 * it fail is thrown as one PreflightError line.
 */
export async function checkBeforeRun(context: CliContext, only: string | undefined, writeConcern: W, resolveConflicts = true): Promise<void> {
  const [{ preflight, firstFailure }, { PreflightError }] = await Promise.all([import('../check/preflight.ts'), import('../errors.ts')]);
  const findings = await preflight({
    topology: context.topology(),
    connect: context.connect,
    writeConcern,
    writeConcernTimeoutMS: Math.min(WRITE_CONCERN_WAIT_MS, context.options.connectTimeout * 1000),
    runOnly: true,
    resolveConflicts,
    // The run goes on with these clients (CliContext.park).
    release: context.park,
    ...(only === undefined ? {} : { only }),
  }).catch(async (err: unknown) => {
    await context.closeParked();
    throw err;
  });
  // A run that cannot start says why in one line, its warnings aside.
  const failure = firstFailure(findings);
  if (failure) {
    await context.closeParked();
    throw new PreflightError(failure);
  }
  for (const f of findings) if (f.level === 'warning') context.logger().warn({ server: f.server, check: f.check }, f.message);
}
