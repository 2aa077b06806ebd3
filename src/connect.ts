// Connecting to a server of the topology. Every failure becomes one ServerError line that names
// the server and says what is wrong (unreachable, credentials refused, not a replica set), with
// the password hidden. A connected client is a replica set member: mmm reads its oplog.

import { MongoClient, MongoError, MongoNetworkError, MongoServerSelectionError } from 'mongodb';
import { ServerError } from './errors.ts';
import { redactPassword, redactUri, type ServerSpec } from './topology.ts';

export interface ConnectOptions {
  /** How long to wait for the server, in ms: both server selection and each socket connect. */
  timeoutMS?: number;
}

export const CONNECT_DEFAULTS = { timeoutMS: 10_000 } as const satisfies Required<ConnectOptions>;

/** The name mmm's connections give the server: `$currentOp` shows it (./apply/abandoned.ts). */
export const APP_NAME = 'mmm';

/** The server's error code for refused credentials (AuthenticationFailed). */
const AUTHENTICATION_FAILED = 18;

/** Connects and checks that the server is a replica set member. Throws ServerError. */
export async function connectServer(server: ServerSpec, options: ConnectOptions = {}): Promise<MongoClient> {
  const timeoutMS = options.timeoutMS ?? CONNECT_DEFAULTS.timeoutMS;
  const fail = (problem: string, cause?: unknown) =>
    new ServerError(`${server.name} (${redactUri(server.uri)}): ${redactPassword(problem, server.uri)}`, server.name, {
      cause,
    });

  let client: MongoClient;
  try {
    client = new MongoClient(server.uri, {
      appName: APP_NAME,
      serverSelectionTimeoutMS: timeoutMS,
      connectTimeoutMS: timeoutMS,
    });
  } catch (err) {
    throw fail(`invalid uri: ${(err as Error).message}`, err);
  }
  try {
    await client.connect();
    // setName is present only on members of an initiated replica set, the servers with an oplog.
    const hello = await client.db('admin').command({ hello: 1 });
    if (typeof hello.setName !== 'string') {
      throw fail('not a replica set member; mmm needs the oplog, which only replica sets keep');
    }
    return client;
  } catch (err) {
    await client.close();
    if (err instanceof ServerError) throw err;
    throw fail(describeFailure(err, timeoutMS), err);
  }
}

function describeFailure(err: unknown, timeoutMS: number): string {
  const message = (err as Error).message;
  if (err instanceof MongoError && err.code === AUTHENTICATION_FAILED) return 'authentication failed';
  if (err instanceof MongoServerSelectionError || err instanceof MongoNetworkError) {
    return `unreachable (waited ${timeoutMS / 1000} s): ${message}`;
  }
  return message;
}
