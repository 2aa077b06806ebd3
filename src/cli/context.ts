// What every command gets: the global options, the topology, connections, the streams to talk
// to the user on, and a way to set the exit code. Commands stay thin: they validate their input
// with the library's parsers, then call the library.
//
// The driver, the logger and the YAML parser are loaded by `load()`, which main calls just
// before a command's action runs: `mmm --help` and `mmm --version` load none of them, and start
// in a fraction of the time.

import type { Command } from 'commander';
import type { MongoClient } from 'mongodb';
import type { ReplicationConfigStore } from '../config/store.ts';
import { UsageError } from '../errors.ts';
import type { LogFormat, Logger, LogLevel } from '../log.ts';
import { Topology, type ServerSpec } from '../topology.ts';

/** What commands need from the heavy modules, once loaded. */
interface Library {
  store: typeof import('../config/store.ts');
  connect: typeof import('../connect.ts');
  log: typeof import('../log.ts');
  topologyFile: typeof import('../topology-file.ts');
}

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
  private library: Library | undefined;
  /** Clients kept for the next connect to their server, by server id (park). */
  private readonly parked = new Map<string, MongoClient>();

  constructor(
    private readonly program: Command,
    readonly io: CliIO,
  ) {}

  get options(): GlobalOptions {
    return this.program.opts<GlobalOptions>();
  }

  /** Loads the modules commands use; main calls it before any action. */
  async load(): Promise<void> {
    const [store, connect, log, topologyFile] = await Promise.all([
      import('../config/store.ts'),
      import('../connect.ts'),
      import('../log.ts'),
      import('../topology-file.ts'),
    ]);
    this.library = { store, connect, log, topologyFile };
  }

  private get lib(): Library {
    if (!this.library) throw new Error('CliContext.load() was not called before the command ran');
    return this.library;
  }

  /**
   * The topology file given with -c, loaded on first use, with --metadata-db (if given) as
   * every server's metadata database. Throws ConfigError.
   */
  topology(): Topology {
    if (!this.loadedTopology) {
      const loaded = this.lib.topologyFile.loadTopology(this.options.config);
      const { metadataDb } = this.options;
      this.loadedTopology = metadataDb === undefined ? loaded : new Topology(loaded.servers.map((s) => ({ ...s, metadataDb })));
    }
    return this.loadedTopology;
  }

  /** The links and checkpoints `server` keeps, read and written through `client`. */
  store(client: MongoClient, server: ServerSpec): ReplicationConfigStore {
    const { ReplicationConfigStore, metadataStoreOptions } = this.lib.store;
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
    const { createLogger, defaultLogFormat } = this.lib.log;
    this.createdLogger ??= createLogger(this.options.logLevel, this.options.logFormat ?? defaultLogFormat(this.io.stderr as { isTTY?: boolean }));
    return this.createdLogger;
  }

  /** Opens a client for `server` (or hands over the one parked for it), or throws ServerError; the caller closes it. */
  readonly connect = async (server: ServerSpec): Promise<MongoClient> => {
    const parked = this.parked.get(server.id);
    if (parked) {
      this.parked.delete(server.id);
      return parked;
    }
    const client = await this.lib.connect.connectServer(server, { timeoutMS: this.options.connectTimeout * 1000 });
    this.logger().debug({ server: server.name }, 'connected');
    return client;
  };

  /**
   * Keeps `client`, connected to `server`, for the next `connect` to it: `run` replicates with
   * the clients its start-up check opened, instead of connecting to every server twice.
   * closeParked closes those nobody took.
   */
  readonly park = async (server: ServerSpec, client: MongoClient): Promise<void> => {
    await this.parked.get(server.id)?.close();
    this.parked.set(server.id, client);
  };

  async closeParked(): Promise<void> {
    const clients = [...this.parked.values()];
    this.parked.clear();
    await Promise.all(clients.map((c) => c.close()));
  }

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
