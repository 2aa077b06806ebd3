// The logger, on stderr, keeping stdout for the commands' own output. Two formats: pino's JSON
// lines, for a log collector, and readable lines (pino-pretty) for a person at a terminal; by
// default readable when stderr is a terminal, JSON otherwise.
import { createRequire } from 'node:module';
import { pino, type Logger } from 'pino';

export type { Logger };

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

export type LogFormat = 'json' | 'pretty';

export const LOG_FORMATS: readonly LogFormat[] = ['json', 'pretty'];

/** The format to use when none is asked for: readable on a terminal, JSON lines elsewhere. */
export function defaultLogFormat(stderr: { isTTY?: boolean } = process.stderr): LogFormat {
  return stderr.isTTY ? 'pretty' : 'json';
}

export function createLogger(level: LogLevel = 'info', format: LogFormat = 'json'): Logger {
  if (format === 'pretty') {
    // In this thread and synchronous, like the JSON destination: a line is out before the next
    // statement, and nothing is lost when the process exits.
    // Loaded only for this format: it takes a good part of a start-up (60 ms here) otherwise.
    const { PinoPretty } = createRequire(import.meta.url)('pino-pretty') as typeof import('pino-pretty');
    const stream = PinoPretty({
      destination: 2,
      sync: true,
      colorize: Boolean(process.stderr.isTTY),
      translateTime: 'SYS:HH:MM:ss.l',
      ignore: 'pid,hostname',
    });
    return pino({ level, base: undefined }, stream);
  }
  return pino({ level, base: undefined }, pino.destination({ fd: 2, sync: true }));
}

/** A logger that drops everything: the default for library callers that pass none. */
export const silentLogger: Logger = pino({ level: 'silent' });
