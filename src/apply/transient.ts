// Which failures are worth retrying: the server went away, stepped down or is shutting down, the
// network broke, or a cursor was lost. Asked of the error's class, labels and code, never its text.

import {
  Double,
  Int32,
  MongoBulkWriteError,
  MongoError,
  MongoNetworkError,
  MongoServerError,
  MongoServerSelectionError,
  MongoWriteConcernError,
} from 'mongodb';

/** Server error codes that say "try again later", not "this can never work". */
const TRANSIENT_CODES = new Set([
  6, // HostUnreachable
  7, // HostNotFound
  43, // CursorNotFound: the tailing cursor was reaped; reopen it from the checkpoint
  64, // WriteConcernFailed (wtimeout)
  89, // NetworkTimeout
  91, // ShutdownInProgress
  134, // ReadConcernMajorityNotAvailableYet
  175, // QueryPlanKilled
  189, // PrimarySteppedDown
  237, // CursorKilled
  246, // SnapshotUnavailable: a snapshot read (../conflict/history.ts) older than a collection's creation
  262, // ExceededTimeLimit
  9001, // SocketException
  10107, // NotWritablePrimary
  11600, // InterruptedAtShutdown
  11602, // InterruptedDueToReplStateChange
  13435, // NotPrimaryNoSecondaryOk
  13436, // NotPrimaryOrSecondary
]);

/** NamespaceExists: a collection created meanwhile, by another writer (or a user's first insert). */
export const NAMESPACE_EXISTS = 48;

/** MaxTimeMSExpired: a command ran out of its `maxTimeMS`. */
export const MAX_TIME_MS_EXPIRED = 50;

/**
 * The server's error code of `err`, as a number. A command run with `promoteValues: false` (the
 * oplog tailer's cursor) gets its error's fields unpromoted too: then `code` is an Int32.
 */
export function serverErrorCode(err: unknown): number | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'number') return code;
  if (code instanceof Int32 || code instanceof Double) return code.value;
  return undefined;
}

export function isTransient(err: unknown): boolean {
  if (err instanceof MongoNetworkError || err instanceof MongoServerSelectionError) return true;
  // A bulk write that failed before any server answered (no server to select, the connection
  // refused) wraps the driver's error, which it keeps as `errorResponse`: ask that one.
  if (err instanceof MongoBulkWriteError && err.errorResponse instanceof Error && err.errorResponse !== err) {
    return isTransient(err.errorResponse);
  }
  if (err instanceof MongoWriteConcernError) return true;
  if (err instanceof MongoError) {
    if (err.hasErrorLabel('RetryableWriteError') || err.hasErrorLabel('TransientTransactionError')) return true;
    const code = serverErrorCode(err);
    if (err instanceof MongoServerError && code !== undefined && TRANSIENT_CODES.has(code)) return true;
    // A bulk write that failed for a write-concern reason carries it here, not in `code`.
    const wce = (err as { writeConcernError?: { code?: number } }).writeConcernError;
    if (wce) return true;
  }
  return false;
}
