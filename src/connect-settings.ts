// What connecting to a server is told, without the driver (which ./connect.ts loads): the CLI
// shows the default timeout in its help before any command has loaded the driver.

import os from 'node:os';

export interface ConnectOptions {
  /** How long to wait for the server, in ms: both server selection and each socket connect. */
  timeoutMS?: number;
}

/** What every application name of mmm's starts with; older versions used `mmm` alone. */
export const APP_NAME_PREFIX = 'mmm ';

export const CONNECT_DEFAULTS = { timeoutMS: 10_000 } as const satisfies Required<ConnectOptions>;

/**
 * The name mmm's connections give the server, which `$currentOp` and the server's log show:
 * `mmm <pid>@<host>`, so that an operator (and a test's fail point, which matches a client by
 * name) can tell one process from another; every name starting `mmm ` is mmm's
 * (./apply/abandoned.ts). The server takes at most 128 bytes.
 */
export const APP_NAME = `${APP_NAME_PREFIX}${process.pid}@${os.hostname()}`.slice(0, 128);
