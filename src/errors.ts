// Our error classes. Each names what went wrong and carries what a caller needs, so the CLI maps
// each to one line and an exit code, and retry logic asks the error's class, never its text.

/** Base of every error mmm raises on purpose; anything else is a bug or a driver error. */
export class MmmError extends Error {
  /** Exit code the CLI uses: 2 for usage and configuration errors, 1 for runtime failures. */
  readonly exitCode: number = 1;

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The command line asks for something that cannot be: unknown server, bad namespace, bad ops. */
export class UsageError extends MmmError {
  override readonly exitCode = 2;
}

/** The topology file is missing, unreadable or malformed. */
export class ConfigError extends MmmError {
  override readonly exitCode = 2;
}

/** A server cannot be reached, refuses our credentials, or is not what mmm needs (no oplog). */
export class ServerError extends MmmError {
  constructor(
    message: string,
    /** Topology name of the server. */
    readonly server: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** The replication config a server keeps (`local.mmm`) is not in the shape mmm writes. */
export class StoredConfigError extends MmmError {}

/**
 * An oplog entry that mmm cannot replicate faithfully (for example a prepared transaction).
 * Replication of the link stops rather than skip it silently.
 */
export class UnsupportedOplogEntryError extends MmmError {}

/** The checkpoint of a link points at oplog entries the source has already overwritten. */
export class OplogRolledOverError extends MmmError {}

/**
 * A destination refused a write for good, and the run was told to stop on that
 * (`--on-refused stop`). The write is kept in `mmm.refused` on the destination.
 */
export class RefusedWriteError extends MmmError {
  constructor(
    message: string,
    /** Namespace on the destination, and the document's `_id`. */
    readonly ns: string,
    readonly id: unknown,
  ) {
    super(message);
  }
}

/**
 * A copy (`replicate --copy`) cannot go on exactly: its snapshot or its start position is gone
 * from the source, or the link changed under it. What was copied stays, and says where it stopped.
 */
export class CopyError extends MmmError {}

/** A check before `run` found something that would make it fail (./check/preflight.ts). */
export class PreflightError extends MmmError {}
