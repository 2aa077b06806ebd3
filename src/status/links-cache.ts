// What `status` remembers, on this machine, of each destination's links: a destination keeps its
// links itself (in its metadata), so while it cannot be reached nothing else can tell them, and
// they would vanish from the table just when they matter. Each time status reads a destination
// it writes them to a file of this machine's cache, `$XDG_CACHE_HOME/mmm/links-<server id>.json`
// (by default ~/.cache/mmm/); while the destination is unreachable, status lists them from there
// with state `unknown`. Best effort: a cache that cannot be read or written is no cache.

import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface CachedSource {
  sourceId: string;
  links: Array<{ src: string; dst: string; ops: string }>;
}

export interface CachedLinks {
  /** When status last read them from the destination (this machine's clock). */
  seen: Date;
  sources: CachedSource[];
}

export interface LinksMemory {
  read(serverId: string): CachedLinks | undefined;
  write(serverId: string, sources: readonly CachedSource[], seen: Date): void;
}

/** The cache folder: $XDG_CACHE_HOME/mmm, or ~/.cache/mmm. */
export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'mmm');
}

export class LinksCache implements LinksMemory {
  constructor(private readonly dir: string = defaultCacheDir()) {}

  read(serverId: string): CachedLinks | undefined {
    try {
      const stored = JSON.parse(readFileSync(this.file(serverId), 'utf8')) as { seen: string; sources: CachedSource[] };
      const seen = new Date(stored.seen);
      if (Number.isNaN(seen.getTime()) || !Array.isArray(stored.sources)) return undefined;
      return { seen, sources: stored.sources.map(({ sourceId, links }) => ({ sourceId, links: links.map(({ src, dst, ops }) => ({ src, dst, ops })) })) };
    } catch {
      return undefined;
    }
  }

  write(serverId: string, sources: readonly CachedSource[], seen: Date): void {
    const file = this.file(serverId);
    const text = JSON.stringify({
      seen: seen.toISOString(),
      sources: sources.map(({ sourceId, links }) => ({ sourceId, links: links.map(({ src, dst, ops }) => ({ src, dst, ops })) })),
    });
    try {
      mkdirSync(this.dir, { recursive: true });
      // Whole or not at all: another status may read it meanwhile.
      writeFileSync(`${file}.${process.pid}`, text);
      renameSync(`${file}.${process.pid}`, file);
    } catch {
      // A read-only home, a full disk: status goes on without remembering.
    }
  }

  private file(serverId: string): string {
    // Server ids are UUIDs (topology-file.ts); anything else could not name a file safely.
    return path.join(this.dir, `links-${serverId.replace(/[^0-9a-f-]/gi, '_')}.json`);
  }
}
