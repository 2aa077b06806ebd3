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
 * Why the driver refused `uri`, told without quoting any part of its password, whatever the
 * URI's shape: the driver's own messages may quote the host list, the user name or the part of
 * a malformed URI it stumbled on, which holds the password when an unescaped `@` or `/` in it,
 * or a missing `@`, made it look like a host. A message is shown as the driver wrote it only if
 * it shares no three characters in a row with what may be the password; the common mistakes
 * get an explanation of their own.
 */
export function uriProblem(driverMessage: string, uri: string): string {
  if (/^Unable to parse .* with URL$/s.test(driverMessage)) {
    return "a host or port cannot be parsed (a missing '@', or an '@' or '/' in the password not percent-encoded, makes part of the credentials look like a host)";
  }
  if (driverMessage.startsWith('Username contains unescaped characters')) {
    return 'Username contains unescaped characters (percent-encode @ : / ? # [ ] % in it)';
  }
  if (driverMessage === 'URI malformed') {
    return "a '%' is not followed by two hexadecimal digits (write a '%' in the password as %25)";
  }
  if (driverMessage === 'Invalid connection string') {
    return "it cannot be parsed (an '@' in the password not percent-encoded, as %40?)";
  }
  if (FIXED_MESSAGES.includes(driverMessage) || !sharesText(driverMessage, possibleSecret(uri))) return driverMessage;
  return "the driver cannot parse it (its message is not shown: it would quote part of the credentials); percent-encode @ : / ? # [ ] % in the user name and password, or give the password with password_env";
}

/** The driver's messages about a connection string that quote nothing of it. */
const FIXED_MESSAGES = [
  'Password contains unescaped characters',
  'Invalid scheme, expected connection string to start with "mongodb://" or "mongodb+srv://"',
  'Protocol and host list are required in the uri',
  'URI contained empty userinfo section',
  'mongodb+srv URI cannot have port number',
  'mongodb+srv URI cannot have multiple service names',
];

/**
 * What may be a password in a URI the driver could not parse: the credentials are what comes
 * before the last `@` (an `@` in a password must be escaped; one that is not is the common
 * mistake), or, with no `@`, the host list, where a forgotten `@host` leaves `user:password`.
 * The password is what follows the first `:` there, or all of it when there is no `:`.
 */
function possibleSecret(uri: string): string {
  const rest = uri.replace(/^[a-z+]*:\/\//i, '');
  const at = rest.lastIndexOf('@');
  const credentials = at === -1 ? rest.split(/[/?]/)[0] ?? '' : rest.slice(0, at);
  const colon = credentials.indexOf(':');
  return colon === -1 ? credentials : credentials.slice(colon + 1);
}

/** Whether `text` holds three characters in a row of `secret` (all of it, if shorter). */
function sharesText(text: string, secret: string): boolean {
  if (secret === '') return false;
  const n = Math.min(3, secret.length);
  for (let i = 0; i + n <= secret.length; i++) if (text.includes(secret.slice(i, i + n))) return true;
  return false;
}

/**
 * `uri` with `password` as its password: for a password given in the environment, which may
 * hold any character, percent-encoded here as the connection string format requires. The URI
 * must name a user and hold no password; returns undefined when it does not.
 */
export function withPassword(uri: string, password: string): string | undefined {
  const match = /^(mongodb(?:\+srv)?:\/\/)([^@/?:]+)@/.exec(uri);
  if (!match) return undefined;
  const [all, scheme, user] = match;
  return `${scheme}${user}:${encodeURIComponent(password)}@${uri.slice(all.length)}`;
}

/** Whether the URI carries a password (`user:password@`); only for a URI the driver accepts. */
export function hasPassword(uri: string): boolean {
  return /^mongodb(?:\+srv)?:\/\/[^@/]*:[^@/]*@/.test(uri);
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
