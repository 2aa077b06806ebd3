// The logger. pino writes JSON lines to stderr, keeping stdout for the commands' own output.
import { pino, type Logger } from 'pino';

export type { Logger };

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

export function createLogger(level: LogLevel = 'info'): Logger {
  return pino({ level, base: undefined }, pino.destination({ fd: 2, sync: true }));
}

/** A logger that drops everything: the default for library callers that pass none. */
export const silentLogger: Logger = pino({ level: 'silent' });
