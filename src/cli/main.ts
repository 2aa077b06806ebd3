// The mmm command line: global options, the commands, and how errors end the process.
// Every error is one line on stderr, `mmm: <message>`, and an exit code: 2 when the input is
// wrong (command line or topology file), 1 when something fails at run time.
//
// Start-up is kept short: this module loads commander and a few small modules of ours, and
// only the module of the command asked for (found in argv before commander parses it); the
// others are listed by name and summary. The driver and the logger load when an action runs
// (CliContext.load). So `mmm --help` and `mmm --version` load neither.

import { readFileSync } from 'node:fs';
import { inspect } from 'node:util';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { describeUnauthorized } from '../check/privileges.ts';
import { CONNECT_DEFAULTS } from '../connect-settings.ts';
import { MmmError } from '../errors.ts';
import type { LogFormat, LogLevel } from '../log.ts';
import { metadataDatabaseProblem } from '../namespace.ts';
import { CliContext, type CliIO } from './context.ts';

/** Adds one command to the program. */
export type RegisterCommand = (program: Command, context: CliContext) => void;

interface CommandEntry {
  name: string;
  /** The line `mmm --help` shows for it. */
  summary: string;
  load: () => Promise<RegisterCommand>;
}

/** The commands, in the order --help lists them. */
const COMMANDS: readonly CommandEntry[] = [
  { name: 'dump-config', summary: 'show the servers and the collections each one replicates', load: async () => (await import('./dump-config.ts')).registerDumpConfig },
  { name: 'clear-config', summary: 'remove every link and checkpoint from all servers, or from one', load: async () => (await import('./clear-config.ts')).registerClearConfig },
  { name: 'replicate', summary: 'replicate a collection from one server into another; for an existing link, change its ops', load: async () => (await import('./replicate.ts')).registerReplicate },
  { name: 'unreplicate', summary: 'stop replicating a collection from one server into another', load: async () => (await import('./replicate.ts')).registerUnreplicate },
  { name: 'reset-checkpoint', summary: "after a lost oplog window: make DST replicate SRC from SRC's newest oplog entry on (stop `run` first)", load: async () => (await import('./reset-checkpoint.ts')).registerResetCheckpoint },
  { name: 'run', summary: 'replicate: follow the oplog of every source and apply its changes, until SIGINT or SIGTERM', load: async () => (await import('./run.ts')).registerRun },
  { name: 'status', summary: "each link's state, checkpoint, lag and applied writes, and each server's oplog window", load: async () => (await import('./status.ts')).registerStatus },
  { name: 'conflicts', summary: 'list the newest conflicts: the versions that lost, kept on the server where they lost', load: async () => (await import('./conflicts.ts')).registerConflicts },
  { name: 'verify', summary: 'compare the two collections of every link (or one), document by document; --repair makes them equal', load: async () => (await import('./verify.ts')).registerVerify },
  { name: 'check', summary: 'check servers, privileges, write concern, oplog headroom and clocks before a run', load: async () => (await import('./check.ts')).registerCheck },
];

const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];
// As log.ts lists them: importing its value would load the logger at every start.
const LOG_FORMATS: readonly LogFormat[] = ['json', 'pretty'];
const USAGE_EXIT_CODE = 2;
const FAILURE_EXIT_CODE = 1;

const EXIT_STATUS_HELP = `
Exit status:
  0  success
  1  a runtime failure: a server unreachable, credentials refused, not a
     replica set, a privilege missing, a write concern a destination
     cannot satisfy, a run with no link left running (each link's error
     is logged), a failure found by \`mmm check\`, ...
  2  a usage or configuration error: a bad option, namespace or ops, an
     unknown server, a bad topology file`;

/** Runs mmm with `argv` (the arguments after the program name) and returns the exit code. */
export async function main(argv: readonly string[], io: CliIO = process): Promise<number> {
  const program = createProgram(io);
  const context = new CliContext(program, io);
  const asked = requestedCommand(argv, program);
  for (const entry of COMMANDS) {
    if (entry.name === asked) (await entry.load())(program, context);
    // Enough for the list in `mmm --help`; never run, since argv does not name it.
    else program.command(entry.name).summary(entry.summary);
  }
  program.hook('preAction', () => context.load());
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
      .version(packageVersion(), '-V, --version', 'print the version of mmm')
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

/**
 * The command argv names: its first operand, after the global options and their values
 * (`mmm -c test.yml run`), or the one after `help` (`mmm help run`).
 */
function requestedCommand(argv: readonly string[], program: Command): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') return argv[i + 1];
    if (!arg.startsWith('-')) return arg === 'help' ? argv[i + 1] : arg;
    const option = program.options.find((o) => o.long === arg || o.short === arg);
    if (option && (option.required || option.optional)) i++; // its value
  }
  return undefined;
}

/** The version in the package.json of this installation: ../../ from src/cli/ and from dist/cli/. */
function packageVersion(): string {
  const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return version;
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
    if (err.exitCode === 0) return 0; // --help, --version
    // 'commander.help' with a failure code: no command was given.
    const noCommand = err.code === 'commander.help';
    message = noCommand ? "no command given; see 'mmm --help'" : err.message.replace(/^error: /, '');
    exitCode = USAGE_EXIT_CODE;
  } else {
    // A privilege the server refused: which one, not the driver's quote of the whole command.
    message = describeUnauthorized(err) ?? (err instanceof Error ? err.message : String(err));
    exitCode = err instanceof MmmError ? err.exitCode : FAILURE_EXIT_CODE;
  }
  io.stderr.write(`mmm: ${message.replace(/\s*\n\s*/g, ' ')}\n`);
  if (logLevel === 'debug' || logLevel === 'trace') io.stderr.write(`${inspect(err)}\n`);
  return exitCode;
}
