// Option values more than one command takes, parsed for commander.

import { InvalidArgumentError } from 'commander';
import type { W } from 'mongodb';

/** `--write-concern`: 'majority' or a number of members. */
export function parseWriteConcern(value: string): W {
  if (value === 'majority') return value;
  const members = Number(value);
  if (Number.isInteger(members) && members >= 1) return members;
  throw new InvalidArgumentError("expected 'majority' or a number of members (1 or more).");
}

/**
 * The one server `-s/--slave NAME` (the original's name) or `--only NAME` asks for; both may be
 * given only if they agree. Throws UsageError.
 */
export function onlyServer(options: { slave?: string; only?: string }, usage: (message: string) => Error): string | undefined {
  const { slave, only } = options;
  if (slave !== undefined && only !== undefined && slave !== only) throw usage(`--slave ${slave} and --only ${only} name different servers: give one`);
  return only ?? slave;
}
