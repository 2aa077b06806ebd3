// A package registry on 127.0.0.1 that knows exactly the packages of this project's
// package-lock.json, so that a test can `npm install` the packed tarball as a user would
// without the network: npm asks it for each dependency's versions (a packument), picks the
// locked one, and takes its tarball from npm's own cache by integrity (`npm ci` put it there).
// A tarball missing from the cache is asked for here too, and refused: the install fails
// rather than reach out.

import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

interface LockEntry {
  version: string;
  integrity?: string;
  dev?: boolean;
  [field: string]: unknown;
}

const MANIFEST_FIELDS = ['dependencies', 'optionalDependencies', 'peerDependencies', 'peerDependenciesMeta', 'bin', 'engines', 'os', 'cpu'];

export interface LocalRegistry {
  url: string;
  /** Paths asked for that the registry did not have. */
  misses: string[];
  close(): Promise<void>;
}

export async function serveLockfile(lockfile: string): Promise<LocalRegistry> {
  const lock = JSON.parse(readFileSync(lockfile, 'utf8')) as { packages: Record<string, LockEntry> };
  const versions = new Map<string, Map<string, LockEntry>>();
  for (const [where, entry] of Object.entries(lock.packages)) {
    if (where === '' || entry.dev || !entry.integrity) continue;
    const name = where.slice(where.lastIndexOf('node_modules/') + 'node_modules/'.length);
    if (!versions.has(name)) versions.set(name, new Map());
    versions.get(name)!.set(entry.version, entry);
  }
  const misses: string[] = [];
  let url = '';
  const server = createServer((request, response) => {
    const name = decodeURIComponent((request.url ?? '/').slice(1));
    const known = versions.get(name);
    if (!known) {
      misses.push(request.url ?? '');
      response.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not found"}');
      return;
    }
    const packument = {
      name,
      'dist-tags': { latest: [...known.keys()].at(-1) },
      versions: Object.fromEntries(
        [...known].map(([version, entry]) => [
          version,
          {
            name,
            version,
            ...Object.fromEntries(MANIFEST_FIELDS.filter((f) => entry[f] !== undefined).map((f) => [f, entry[f]])),
            dist: { integrity: entry.integrity, tarball: `${url}/-/tarballs/${encodeURIComponent(name)}-${version}.tgz` },
          },
        ]),
      ),
    };
    response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(packument));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { url, misses, close: () => new Promise((resolve) => server.close(() => resolve())) };
}
