// The topology: which servers exist, their UUIDs and URIs. Loaded from the YAML file given
// with -c; see loadTopology (src/topology-file.ts) for validation.

/** One replica set named in the topology file. */
export interface ServerSpec {
  /** The name it has in the topology file, e.g. `server_a`. */
  readonly name: string;
  /** Its UUID, lower case with dashes: how links and checkpoints refer to it. */
  readonly id: string;
  /** The MongoDB connection string. May hold a password: print it with redactUri only. */
  readonly uri: string;
  /**
   * The database that keeps this server's links and checkpoints (`<db>.mmm`); `local` when
   * unset. A replicated database keeps them across a failover (README, "Failure behaviour").
   */
  readonly metadataDb?: string;
}

export class Topology {
  readonly servers: readonly ServerSpec[];
  private readonly names = new Map<string, ServerSpec>();
  private readonly ids = new Map<string, ServerSpec>();

  constructor(servers: readonly ServerSpec[]) {
    this.servers = servers;
    for (const s of servers) {
      this.names.set(s.name, s);
      this.ids.set(s.id, s);
    }
  }

  byName(name: string): ServerSpec | undefined {
    return this.names.get(name);
  }

  byId(id: string): ServerSpec | undefined {
    return this.ids.get(id);
  }
}

/** The URI with any password replaced by `****`, for output and logs. */
export function redactUri(uri: string): string {
  return uri.replace(/^(mongodb(?:\+srv)?:\/\/)([^@/]*)@/, (_all, scheme: string, userinfo: string) => {
    const colon = userinfo.indexOf(':');
    return colon === -1 ? `${scheme}${userinfo}@` : `${scheme}${userinfo.slice(0, colon)}:****@`;
  });
}

/**
 * `text` with the URI's password, if any, replaced by `****`: for driver messages about a URI,
 * which may quote it. Works on malformed URIs too, where redactUri cannot find the userinfo:
 * a password with an unescaped `@` or `/` runs up to the last `@` before the options.
 */
export function redactPassword(text: string, uri: string): string {
  const rest = uri.replace(/^[a-z+]+:\/\//i, '').split('?')[0] ?? '';
  const userinfo = rest.slice(0, Math.max(rest.lastIndexOf('@'), 0));
  const colon = userinfo.indexOf(':');
  const password = colon === -1 ? '' : userinfo.slice(colon + 1);
  return password ? text.split(password).join('****') : text;
}
