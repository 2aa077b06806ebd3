// Connecting to a server of the topology. Every failure becomes one ServerError line that names
// the server and says what is wrong (unreachable, credentials refused, not a replica set), with
// the password hidden. A connected client is a replica set member: mmm reads its oplog.

import { MongoClient, MongoError, MongoNetworkError, MongoServerSelectionError } from 'mongodb';
import { APP_NAME, CONNECT_DEFAULTS, type ConnectOptions } from './connect-settings.ts';
import { ServerError } from './errors.ts';
import { redactPassword, redactUri, uriProblem, type ServerSpec } from './topology.ts';

/** The server's error code for refused credentials (AuthenticationFailed). */
const AUTHENTICATION_FAILED = 18;

/**
 * Connects and checks that the server is a replica set member. Throws ServerError. (This module
 * loads the driver: the CLI loads it when a command runs, not to parse its arguments:
 * ./cli/context.ts.)
 */
export async function connectServer(server: ServerSpec, options: ConnectOptions = {}): Promise<MongoClient> {
  const timeoutMS = options.timeoutMS ?? CONNECT_DEFAULTS.timeoutMS;
  let password: string | undefined;
  const fail = (problem: string, cause?: unknown) => {
    let shown = redactPassword(problem, server.uri);
    // The password as the driver parsed it, percent-decoded, in case a message quotes it so.
    if (password) shown = shown.split(password).join('****');
    return new ServerError(`${server.name} (${redactUri(server.uri)}): ${shown}`, server.name, { cause });
  };
  const describeFailure = (err: unknown): string => {
    const message = (err as Error).message;
    if (err instanceof MongoError && err.code === AUTHENTICATION_FAILED) return 'authentication failed';
    if (err instanceof MongoServerSelectionError || err instanceof MongoNetworkError) {
      return `unreachable (waited ${timeoutMS / 1000} s): ${message}`;
    }
    return message;
  };

  let client: MongoClient;
  try {
    client = new MongoClient(server.uri, {
      appName: APP_NAME,
      serverSelectionTimeoutMS: timeoutMS,
      connectTimeoutMS: timeoutMS,
    });
  } catch (err) {
    // Not the driver's error as the cause: `--log-level debug` prints the cause, and its message
    // may quote the password.
    throw fail(`invalid uri: ${uriProblem((err as Error).message, server.uri)}`);
  }
  password = client.options.credentials?.password;
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
    throw fail(describeFailure(err), err);
  }
}
