// The mmm command line: global options, the commands, and how errors end the process.
// Every error is one line on stderr, `mmm: <message>`, and an exit code: 2 when the input is
// wrong (command line or topology file), 1 when something fails at run time.

import { inspect } from 'node:util';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { CONNECT_DEFAULTS } from '../connect.ts';
import { MmmError } from '../errors.ts';
import { LOG_FORMATS, type LogLevel } from '../log.ts';
import { metadataDatabaseProblem } from '../namespace.ts';
import { registerClearConfig } from './clear-config.ts';
import { CliContext, type CliIO } from './context.ts';
import { registerDumpConfig } from './dump-config.ts';
import { registerReplicate, registerUnreplicate } from './replicate.ts';
import { registerResetCheckpoint } from './reset-checkpoint.ts';
import { registerRun } from './run.ts';
import { registerStatus } from './status.ts';

/** Adds one command (or a few) to the program. */
export type RegisterCommand = (program: Command, context: CliContext) => void;

/** The commands, in the order --help lists them. */
const COMMANDS: readonly RegisterCommand[] = [
  registerDumpConfig,
  registerClearConfig,
  registerReplicate,
  registerUnreplicate,
  registerResetCheckpoint,
  registerRun,
  registerStatus,
];

const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];
const USAGE_EXIT_CODE = 2;
const FAILURE_EXIT_CODE = 1;

const EXIT_STATUS_HELP = `
Exit status:
  0  success
  1  a runtime failure: a server unreachable, credentials refused, not a
     replica set, a run with no link left running (each link's error is
     logged), ...
  2  a usage or configuration error: a bad option, namespace or ops, an
     unknown server, a bad topology file`;

/** Runs mmm with `argv` (the arguments after the program name) and returns the exit code. */
export async function main(argv: readonly string[], io: CliIO = process): Promise<number> {
  const program = createProgram(io);
  const context = new CliContext(program, io);
  for (const register of COMMANDS) register(program, context);
  try {
    await program.parseAsync(argv, { from: 'user' });
    return context.exitCode;
  } catch (err) {
    return reportError(err, io, program.opts<{ logLevel?: LogLevel }>().logLevel);
  }
}

function createProgram(io: CliIO): Command {
  return (
    new Command('mmm')
      .description('MongoDB multi-master replication: replicate collections between replica sets, in every direction.')
      .requiredOption('-c, --config <file>', 'the topology file (YAML): each server name with its id and uri')
      .addOption(new Option('--log-level <level>', 'how much to log, to stderr').choices(LOG_LEVELS).default('info'))
      .addOption(
        new Option('--log-format <format>', 'json lines, or readable lines (default: pretty on a terminal, json otherwise)').choices(
          LOG_FORMATS,
        ),
      )
      .addOption(
        new Option('--connect-timeout <seconds>', 'how long to wait for each server')
          .argParser(parseSeconds)
          .default(CONNECT_DEFAULTS.timeoutMS / 1000),
      )
      .addOption(
        new Option(
          '--metadata-db <name>',
          "keep links and checkpoints in NAME.mmm on every server; a replicated database survives a failover (default: the topology file's metadata_db, or local)",
        ).argParser(parseMetadataDb),
      )
      .addHelpText('after', EXIT_STATUS_HELP)
      // Errors are thrown to main, which prints them as one line: commander prints nothing on
      // stderr itself (not even the whole help it shows when no command is given).
      .exitOverride()
      .configureOutput({
        writeOut: (text) => io.stdout.write(text),
        writeErr: () => {},
        outputError: () => {},
      })
  );
}

function parseSeconds(value: string): number {
  const seconds = Number(value);
  if (seconds > 0 && Number.isFinite(seconds)) return seconds;
  throw new InvalidArgumentError('expected a positive number of seconds.');
}

function parseMetadataDb(value: string): string {
  const problem = metadataDatabaseProblem(value);
  if (problem) throw new InvalidArgumentError(`${problem}.`);
  return value;
}

function reportError(err: unknown, io: CliIO, logLevel: LogLevel | undefined): number {
  let message: string;
  let exitCode: number;
  if (err instanceof CommanderError) {
    if (err.exitCode === 0) return 0; // --help
    // 'commander.help' with a failure code: no command was given.
    const noCommand = err.code === 'commander.help';
    message = noCommand ? "no command given; see 'mmm --help'" : err.message.replace(/^error: /, '');
    exitCode = USAGE_EXIT_CODE;
  } else {
    message = err instanceof Error ? err.message : String(err);
    exitCode = err instanceof MmmError ? err.exitCode : FAILURE_EXIT_CODE;
  }
  io.stderr.write(`mmm: ${message.replace(/\s*\n\s*/g, ' ')}\n`);
  if (logLevel === 'debug' || logLevel === 'trace') io.stderr.write(`${inspect(err)}\n`);
  return exitCode;
}
