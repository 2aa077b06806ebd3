// The published build: the CLI bundled by esbuild into dist/ (what bin/mmm runs once built, and
// all that the package ships), so that the installed command needs no TypeScript compiler at
// run time, and so that starting it does not resolve and read the driver's 300 modules one by
// one: a bundle took spawn-to-first-oplog-read from 337-433 to 291-330 ms here (README,
// "Performance"). Each command's modules are a chunk of their own, loaded when that command
// runs (`mmm --help` loads none of the driver). Type checking is tsc's (`npm run typecheck`).
// Run: `npm run build`.
import { rmSync } from 'node:fs';
import { build } from 'esbuild';

const root = new URL('..', import.meta.url);
rmSync(new URL('dist', root), { recursive: true, force: true });
await build({
  absWorkingDir: root.pathname,
  entryPoints: ['src/cli/main.ts'],
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  outdir: 'dist',
  // dist/cli/main.js: bin/mmm's entry, and `../../package.json` from it is the package's.
  entryNames: 'cli/[name]',
  chunkNames: 'chunks/[name]-[hash]',
  // Bundled CommonJS (the driver, pino, commander) requires Node's modules, and the driver's
  // optional packages (kerberos, snappy, ...) where a user installed them: ESM has no `require`.
  banner: { js: "import { createRequire as __mmmCreateRequire } from 'node:module'; const require = __mmmCreateRequire(import.meta.url);" },
  logLevel: 'warning',
});
