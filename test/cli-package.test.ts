// The package as a user installs it: `npm pack`, then `npm install -g` of the tarball into a
// temporary prefix (its dependencies from a registry on 127.0.0.1 that knows the locked versions,
// and npm's cache: no network; ./support/local-registry.ts), and the installed `mmm` run from another
// directory: --version, --help, and the documented session against two real replica sets.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { ReplicationConfigStore } from '../src/config/store.ts';
import { ID_A, runCli, startTwoServers, type TwoServers } from './support/cli.ts';
import { serveLockfile, type LocalRegistry } from './support/local-registry.ts';
import { DOCUMENTED_STEPS, documentedTranscript, recordSession } from './support/session.ts';

const run = promisify(execFile);
const root = fileURLToPath(new URL('..', import.meta.url));
const { name, version } = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { name: string; version: string };

let work: string;
let installed: string;
let packed: string[];
let two: TwoServers;
let registry: LocalRegistry;

before(async () => {
  work = mkdtempSync(path.join(os.tmpdir(), 'mmm-package-'));
  // `npm pack` as in a clone after `npm ci`, but in a copy of it: its prepack script builds
  // dist/, which must not change under the other tests running this clone's bin/mmm.
  const clone = path.join(work, 'clone');
  for (const entry of ['package.json', 'package-lock.json', 'tsconfig.json', 'README.md', 'bin', 'scripts', 'src']) {
    cpSync(path.join(root, entry), path.join(clone, entry), { recursive: true });
  }
  symlinkSync(path.join(root, 'node_modules'), path.join(clone, 'node_modules'));
  const [pack] = await Promise.all([
    run('npm', ['pack', '--json', '--pack-destination', work], { cwd: clone, maxBuffer: 16 * 2 ** 20 }),
    startTwoServers().then((t) => (two = t)),
  ]);
  const [{ filename, files }] = JSON.parse(pack.stdout) as [{ filename: string; files: Array<{ path: string }> }];
  packed = files.map((f) => f.path);
  const prefix = path.join(work, 'prefix');
  registry = await serveLockfile(path.join(root, 'package-lock.json'));
  const install = ['install', '--global', '--prefix', prefix, '--registry', registry.url, '--prefer-offline', '--no-audit', '--no-fund'];
  await run('npm', [...install, path.join(work, filename)], { cwd: work, maxBuffer: 16 * 2 ** 20 });
  installed = path.join(prefix, 'bin', 'mmm');
});

after(async () => {
  await registry?.close();
  await two?.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

test('the tarball holds the compiled CLI, not the TypeScript sources', () => {
  assert.ok(packed.includes('bin/mmm') && packed.includes('dist/cli/main.js') && packed.includes('package.json'), packed.join(' '));
  assert.deepEqual(packed.filter((f) => f.endsWith('.ts') || f.startsWith('src/') || f.startsWith('test/')), []);
  // Installed with its run-time dependencies only: no TypeScript compiler, no tsx.
  const modules = path.join(work, 'prefix', 'lib', 'node_modules', name, 'node_modules');
  assert.ok(existsSync(path.join(modules, 'mongodb')));
  assert.ok(!existsSync(path.join(modules, 'tsx')) && !existsSync(path.join(modules, 'typescript')));
  // (npm also asks after the driver's optional peer dependencies, which are not installed.)
  assert.deepEqual(registry.misses.filter((m) => m.startsWith('/-/tarballs/')), [], 'every tarball came from the cache');
});

test('the installed mmm: --version and --help, from any directory', async () => {
  assert.deepEqual(await runCli(['--version'], { bin: installed, cwd: os.tmpdir() }), { code: 0, stdout: `${version}\n`, stderr: '' });
  const help = await runCli(['--help'], { bin: installed, cwd: os.tmpdir() });
  assert.equal(help.code, 0);
  assert.equal(help.stderr, '');
  assert.ok(help.stdout.startsWith('Usage: mmm [options] [command]\n'), help.stdout);
  for (const command of ['dump-config', 'clear-config', 'replicate', 'unreplicate', 'reset-checkpoint', 'run', 'status', 'check']) {
    assert.match(help.stdout, new RegExp(`^  ${command} `, 'm'));
  }
});

test('the installed mmm: the documented session', async () => {
  // Something to clear first, as in the original's session.
  await new ReplicationConfigStore(two.clients[1]!).addLink(ID_A, { src: 'old.stuff', dst: 'old.stuff', ops: 'iud' });
  const run = (args: string[], typed?: string) => runCli(['-c', 'test.yml', ...args], { bin: installed, cwd: two.dir, ...(typed !== undefined && { input: typed }) });
  const [uriA, uriB] = two.sets.map((s) => s.uri) as [string, string];
  assert.equal(await recordSession(DOCUMENTED_STEPS, run), documentedTranscript(uriA, uriB));
  // And the check a user makes before `mmm run`.
  const check = await runCli(['-c', 'test.yml', 'check'], { bin: installed, cwd: two.dir });
  assert.equal(check.code, 0, check.stdout + check.stderr);
});
