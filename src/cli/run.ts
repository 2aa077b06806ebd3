// `mmm run`: replicate until SIGINT or SIGTERM. The first signal lets every loop finish the batch
// in flight and record its checkpoint, then the process exits 0; a second one exits at once.

import { InvalidArgumentError, type Command } from 'commander';
import type { W } from 'mongodb';
import { APPLY_DEFAULTS, type RefusedPolicy } from '../apply/writer.ts';
import type { ReplicationMetrics } from '../metrics/metrics.ts';
import { METRICS_SERVER_DEFAULTS, serveMetrics, type MetricsServer } from '../metrics/server.ts';
import { runReplication } from '../replicate/runner.ts';
import { WATCH_DEFAULTS, watchLoops } from '../status/watch.ts';
import { UsageError } from '../errors.ts';
import { checkBeforeRun } from './check.ts';
import type { CliContext } from './context.ts';
import { onlyServer, parseWriteConcern } from './options.ts';
import type { ConflictPolicy } from '../conflict/version.ts';

interface RunOptions {
  slave?: string;
  only?: string;
  writeConcern: W;
  metricsPort?: number;
  metricsHost: string;
  statusInterval: number;
  summaryInterval: number;
  onRefused: RefusedPolicy;
  conflicts: string;
}

export function registerRun(program: Command, context: CliContext): void {
  program
    .command('run')
    .description('replicate: follow the oplog of every source and apply its changes, until SIGINT or SIGTERM')
    .option('-s, --slave <name>', 'only replicate into this server (the original\'s name for --only)')
    .option('--only <name>', 'only replicate into this server')
    .option('--on-refused <policy>', 'a write a destination refuses for good is kept in its mmm.refused; then keep (go on) or stop (the link stops)', parseRefusedPolicy, APPLY_DEFAULTS.onRefused)
    .option('--conflicts <policy>', 'two masters writing one document at once: lww (the later write wins), prefer:SERVER (that server\'s write wins), or off (not checked)', 'lww')
    .option('--write-concern <w>', "write concern of every write on a destination: 'majority' or a number of members", parseWriteConcern, 'majority')
    .option('--metrics-port <port>', 'serve Prometheus metrics at http://HOST:PORT/metrics (0: any free port, logged)', parsePort)
    .option('--metrics-host <host>', 'the address to serve metrics on', METRICS_SERVER_DEFAULTS.host)
    .option('--status-interval <seconds>', 'how often to record each link\'s status for `mmm status`', parsePositive, WATCH_DEFAULTS.statusIntervalMs / 1000)
    .option('--summary-interval <seconds>', 'how often to log a summary line per loop, a destination and source (0: never)', parseInterval, WATCH_DEFAULTS.summaryIntervalMs / 1000)
    .action(async (options: RunOptions) => {
      const topology = context.topology();
      const only = onlyServer(options, (message) => new UsageError(message));
      if (only !== undefined) context.server(only, options.only === undefined ? '--slave' : '--only');
      // What would make the run fail is found now, in one line, not at the first write.
      const conflicts = conflictPolicy(options.conflicts, context);
      await checkBeforeRun(context, only, options.writeConcern, conflicts.kind !== 'off');
      const controller = new AbortController();
      const onSignal = () => {
        if (controller.signal.aborted) process.exit(130);
        context.logger().info('stopping: finishing the batch in flight');
        controller.abort();
      };
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
      let metricsServer: MetricsServer | undefined;
      try {
        let metrics: ReplicationMetrics | undefined;
        if (options.metricsPort !== undefined) {
          // Loaded only when asked for: prom-client takes a good part of a start-up (90 ms here).
          const { ReplicationMetrics } = await import('../metrics/metrics.ts');
          metrics = new ReplicationMetrics();
          metricsServer = await serveMetrics(metrics.registry, { host: options.metricsHost, port: options.metricsPort });
          context.logger().info({ url: metricsServer.url }, 'serving metrics');
        }
        const reports = await runReplication(
          {
            topology,
            logger: context.logger(),
            connect: context.connect,
            settings: { writeConcern: { w: options.writeConcern }, onRefused: options.onRefused, conflicts },
            observe: watchLoops({
              logger: context.logger(),
              statusIntervalMs: options.statusInterval * 1000,
              summaryIntervalMs: options.summaryInterval * 1000,
              ...(metrics ? { metrics } : {}),
            }),
            ...(only !== undefined ? { only } : {}),
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
        await metricsServer?.close();
        // Those the start-up check reached for servers no loop of this run used.
        await context.closeParked();
      }
    });
}

function parseRefusedPolicy(value: string): RefusedPolicy {
  if (value === 'keep' || value === 'stop') return value;
  throw new InvalidArgumentError("expected 'keep' or 'stop'.");
}

function parsePort(value: string): number {
  const port = Number(value);
  if (Number.isInteger(port) && port >= 0 && port <= 65535) return port;
  throw new InvalidArgumentError('expected a port number, 0 to 65535 (0: any free port).');
}

function parsePositive(value: string): number {
  const seconds = Number(value);
  if (seconds > 0 && Number.isFinite(seconds)) return seconds;
  throw new InvalidArgumentError('expected a positive number of seconds.');
}

function parseInterval(value: string): number {
  const seconds = Number(value);
  if (seconds >= 0 && Number.isFinite(seconds)) return seconds;
  throw new InvalidArgumentError('expected a number of seconds.');
}

/** `--conflicts`: lww, off, or prefer: and a server the topology names. */
function conflictPolicy(value: string, context: CliContext): ConflictPolicy {
  if (value === 'lww' || value === 'off') return { kind: value };
  if (value.startsWith('prefer:')) return { kind: 'prefer', server: context.server(value.slice('prefer:'.length), '--conflicts prefer:').id };
  throw new UsageError(`--conflicts: expected lww, prefer:SERVER or off, not '${value}'`);
}
