// What every command gets: the global options, the topology, connections, the streams to talk
// to the user on, and a way to set the exit code. Commands stay thin: they validate their input
// with the library's parsers, then call the library.

import type { Command } from 'commander';
import type { MongoClient } from 'mongodb';
import { metadataStoreOptions, ReplicationConfigStore } from '../config/store.ts';
import { connectServer } from '../connect.ts';
import { UsageError } from '../errors.ts';
import { createLogger, defaultLogFormat, type LogFormat, type Logger, type LogLevel } from '../log.ts';
import { Topology, type ServerSpec } from '../topology.ts';
import { loadTopology } from '../topology-file.ts';

export interface CliIO {
  stdin: NodeJS.ReadableStream;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

/** The options given before (or after) the command, as commander parsed them. */
export interface GlobalOptions {
  config: string;
  logLevel: LogLevel;
  /** Unset: pretty when stderr is a terminal, json otherwise. */
  logFormat?: LogFormat;
  /** Seconds to wait for each server. */
  connectTimeout: number;
  /** The database of every server's metadata, over the topology file's `metadata_db`. */
  metadataDb?: string;
}

export class CliContext {
  /** What main returns when the command ends without an error; a command may set it. */
  exitCode = 0;
  private loadedTopology: Topology | undefined;
  private createdLogger: Logger | undefined;

  constructor(
    private readonly program: Command,
    readonly io: CliIO,
  ) {}

  get options(): GlobalOptions {
    return this.program.opts<GlobalOptions>();
  }

  /**
   * The topology file given with -c, loaded on first use, with --metadata-db (if given) as
   * every server's metadata database. Throws ConfigError.
   */
  topology(): Topology {
    if (!this.loadedTopology) {
      const loaded = loadTopology(this.options.config);
      const { metadataDb } = this.options;
      this.loadedTopology = metadataDb === undefined ? loaded : new Topology(loaded.servers.map((s) => ({ ...s, metadataDb })));
    }
    return this.loadedTopology;
  }

  /** The links and checkpoints `server` keeps, read and written through `client`. */
  store(client: MongoClient, server: ServerSpec): ReplicationConfigStore {
    return new ReplicationConfigStore(client, metadataStoreOptions(server));
  }

  /** The server the topology calls `name`; `option` names where the user wrote it. */
  server(name: string, option: string): ServerSpec {
    const topology = this.topology();
    const server = topology.byName(name);
    if (!server) {
      const known = topology.servers.map((s) => s.name).join(', ');
      throw new UsageError(`${option}: unknown server ${JSON.stringify(name)} (the topology has ${known})`);
    }
    return server;
  }

  logger(): Logger {
    this.createdLogger ??= createLogger(this.options.logLevel, this.options.logFormat ?? defaultLogFormat(this.io.stderr as { isTTY?: boolean }));
    return this.createdLogger;
  }

  /** Opens a client for `server`, or throws ServerError; the caller closes it. */
  readonly connect = async (server: ServerSpec): Promise<MongoClient> => {
    const client = await connectServer(server, { timeoutMS: this.options.connectTimeout * 1000 });
    this.logger().debug({ server: server.name }, 'connected');
    return client;
  };

  /**
   * Connects to all `servers` at once, then calls `use` with their clients in the same order,
   * and closes them. Nothing is used unless every connection succeeded: a command either
   * reaches all its servers or changes none of them.
   */
  async withClients<T>(servers: readonly ServerSpec[], use: (clients: MongoClient[]) => Promise<T>): Promise<T> {
    const settled = await Promise.allSettled(servers.map(this.connect));
    const clients = settled.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    try {
      const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason;
      return await use(clients);
    } finally {
      await Promise.all(clients.map((c) => c.close()));
    }
  }

  /** Writes one line to stdout. */
  print(line: string): void {
    this.io.stdout.write(`${line}\n`);
  }
}
