// Versions and the rule that orders them.
//
// A document's version is the write that made its current content: when and where a user made
// it, `(ts, origin)`, where `ts` is the write's position in its origin's oplog (seconds of that
// server's clock, then a counter). mmm carries it in `__mmm` (`<origin>:<t>:<i>`, ../replicate/
// tag.ts) on every document it writes, so a version travels with its content to every server.
//
// Two versions made concurrently (neither write saw the other) are ordered by the policy, the
// same way on every server, so every server keeps the same one:
//   - lww: the later `ts` wins; on equal `ts` (two servers, one second, one counter), the larger
//     origin UUID;
//   - prefer: a version from the preferred server beats any other; two others by lww.
// Both are total orders, so that two servers comparing the same two versions pick the same one.

import { Timestamp } from 'mongodb';

export type ConflictPolicy = { kind: 'lww' } | { kind: 'prefer'; server: string } | { kind: 'off' };

export interface Version {
  /** Position of the write in its origin's oplog; null: older than what the oplog still holds. */
  ts: Timestamp | null;
  origin: string;
}

/** How a policy is written in settings, logs and the conflicts collection. */
export function policyName(policy: ConflictPolicy): string {
  return policy.kind === 'prefer' ? `prefer:${policy.server}` : policy.kind;
}

/** The version a tag names, or undefined for a value that is not a tag. */
export function parseTag(tag: unknown): Version | undefined {
  if (typeof tag !== 'string') return undefined;
  const match = /^(.+):(\d+):(\d+)$/.exec(tag);
  if (!match) return undefined;
  const t = Number(match[2]);
  const i = Number(match[3]);
  if (!Number.isSafeInteger(t) || !Number.isSafeInteger(i) || t > 0xffffffff || i > 0xffffffff) return undefined;
  return { origin: match[1]!, ts: new Timestamp({ t, i }) };
}

/** Whether `a` wins over `b` under `policy` (never both: on every server the same one wins). */
export function beats(a: Version, b: Version, policy: ConflictPolicy): boolean {
  if (policy.kind === 'prefer') {
    const aPreferred = a.origin === policy.server;
    if (aPreferred !== (b.origin === policy.server)) return aPreferred;
  }
  return later(a, b);
}

function later(a: Version, b: Version): boolean {
  if (a.ts === null || b.ts === null) {
    if (a.ts !== b.ts) return b.ts === null;
  } else if (!a.ts.equals(b.ts)) {
    return a.ts.greaterThan(b.ts);
  }
  return a.origin > b.origin;
}

export function sameVersion(a: Version, b: Version): boolean {
  return a.origin === b.origin && (a.ts === null ? b.ts === null : b.ts !== null && a.ts.equals(b.ts));
}
