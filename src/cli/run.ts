// `mmm run`: replicate until SIGINT or SIGTERM. The first signal lets every loop finish the batch
// in flight and record its checkpoint, then the process exits 0; a second one exits at once.

import { InvalidArgumentError, type Command } from 'commander';
import type { W } from 'mongodb';
import { ReplicationMetrics } from '../metrics/metrics.ts';
import { METRICS_SERVER_DEFAULTS, serveMetrics, type MetricsServer } from '../metrics/server.ts';
import { runReplication } from '../replicate/runner.ts';
import { WATCH_DEFAULTS, watchLoops } from '../status/watch.ts';
import type { CliContext } from './context.ts';

interface RunOptions {
  slave?: string;
  writeConcern: W;
  metricsPort?: number;
  metricsHost: string;
  statusInterval: number;
  summaryInterval: number;
}

export function registerRun(program: Command, context: CliContext): void {
  program
    .command('run')
    .description('replicate: follow the oplog of every source and apply its changes, until SIGINT or SIGTERM')
    .option('-s, --slave <name>', 'only replicate into this server')
    .option('--write-concern <w>', "write concern of every write on a destination: 'majority' or a number of members", parseWriteConcern, 'majority')
    .option('--metrics-port <port>', 'serve Prometheus metrics at http://HOST:PORT/metrics (0: any free port, logged)', parsePort)
    .option('--metrics-host <host>', 'the address to serve metrics on', METRICS_SERVER_DEFAULTS.host)
    .option('--status-interval <seconds>', 'how often to record each link\'s status for `mmm status`', parsePositive, WATCH_DEFAULTS.statusIntervalMs / 1000)
    .option('--summary-interval <seconds>', 'how often to log a summary line per loop, a destination and source (0: never)', parseInterval, WATCH_DEFAULTS.summaryIntervalMs / 1000)
    .action(async (options: RunOptions) => {
      const topology = context.topology();
      if (options.slave) context.server(options.slave, '--slave');
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
          metrics = new ReplicationMetrics();
          metricsServer = await serveMetrics(metrics.registry, { host: options.metricsHost, port: options.metricsPort });
          context.logger().info({ url: metricsServer.url }, 'serving metrics');
        }
        const reports = await runReplication(
          {
            topology,
            logger: context.logger(),
            connect: context.connect,
            settings: { writeConcern: { w: options.writeConcern } },
            observe: watchLoops({
              logger: context.logger(),
              statusIntervalMs: options.statusInterval * 1000,
              summaryIntervalMs: options.summaryInterval * 1000,
              ...(metrics ? { metrics } : {}),
            }),
            ...(options.slave ? { only: options.slave } : {}),
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
      }
    });
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

function parseWriteConcern(value: string): W {
  if (value === 'majority') return value;
  const members = Number(value);
  if (Number.isInteger(members) && members >= 1) return members;
  throw new InvalidArgumentError("expected 'majority' or a number of members (1 or more).");
}
