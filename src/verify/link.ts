// Verifying one link: its two collections scanned and compared (./scan.ts), what looks unequal
// read again until it settles (./recheck.ts), and, when asked, repaired (./repair.ts) and read
// again once more.

import type { CollationOptions, MongoClient } from 'mongodb';
import { MmmError } from '../errors.ts';
import type { Namespace } from '../namespace.ts';
import { DEFAULT_SETTINGS } from '../replicate/settings.ts';
import { OplogTailer } from '../oplog/tailer.ts';
import type { Candidate } from './match.ts';
import { recheck, RECHECK_DEFAULTS, type Finding, type LinkSides, type RecheckOptions } from './recheck.ts';
import { repair, REPAIR_DEFAULTS, type Fix, type RepairCounts } from './repair.ts';
import { scan, SCAN_DEFAULTS, type ScanOptions } from './scan.ts';

/** The link's collections cannot be compared (a view, collations that order `_id`s differently). */
export class NotComparableError extends MmmError {}

export interface VerifyOptions {
  scan: ScanOptions;
  recheck: RecheckOptions;
}

export const VERIFY_DEFAULTS: VerifyOptions = { scan: SCAN_DEFAULTS, recheck: RECHECK_DEFAULTS };

export interface LinkOutcome {
  /** Documents read on each side. */
  counts: { source: number; destination: number };
  /** Documents that differ for good, in `_id` order within each kind. */
  findings: Finding[];
  /** Documents that were changing every time they were read. */
  changing: Candidate[];
}

export async function verifyLink(sides: LinkSides, options: VerifyOptions = VERIFY_DEFAULTS): Promise<LinkOutcome> {
  const collation = await sharedCollation(sides);
  const scanned = await scan({ client: sides.source, ns: sides.src }, { client: sides.destination, ns: sides.dst }, collation, options.scan);
  const { findings, changing } = await recheck(sides, scanned.candidates, options.recheck);
  return { counts: scanned.counts, findings, changing };
}

export interface RepairOutcome {
  counts: RepairCounts;
  /** What the repaired documents are now. */
  after: { findings: Finding[]; changing: Candidate[] };
}

/**
 * Makes the documents of `findings` on the other side equal to `prefer`'s, as mmm's writes from
 * `preferredId`, then reads them again.
 */
export async function repairLink(
  sides: LinkSides,
  findings: readonly Finding[],
  prefer: 'source' | 'destination',
  preferredId: string,
  options: VerifyOptions = VERIFY_DEFAULTS,
): Promise<RepairOutcome> {
  const [preferred, target, ns] = prefer === 'source' ? [sides.source, sides.destination, sides.dst] : [sides.destination, sides.source, sides.src];
  const fixes: Fix[] = findings.map((f) => ({
    key: f.key,
    id: f.id,
    current: prefer === 'source' ? f.destination : f.source,
    wanted: prefer === 'source' ? f.source : f.destination,
  }));
  const at = await new OplogTailer(preferred, DEFAULT_SETTINGS).newest();
  const counts = await repair(target, ns, fixes, { ...REPAIR_DEFAULTS, origin: preferredId, at });
  const after = await recheck(sides, findings, options.recheck);
  return { counts, after };
}

/**
 * The collation both collections order their `_id` index by (the collection's default), or
 * undefined for plain binary order. Ranges cut by one side's order must hold the same
 * documents on the other, so the two must agree.
 */
async function sharedCollation(sides: LinkSides): Promise<CollationOptions | undefined> {
  const [source, destination] = await Promise.all([info(sides.source, sides.src), info(sides.destination, sides.dst)]);
  for (const [side, ns] of [[source, sides.src], [destination, sides.dst]] as const) {
    if (side?.type === 'view') throw new NotComparableError(`${ns.ns} is a view`);
    if (side?.type === 'timeseries') throw new NotComparableError(`${ns.ns} is a time-series collection`);
  }
  const a = source?.options?.collation;
  const b = destination?.options?.collation;
  // A missing collection has no order of its own: it holds nothing to misplace.
  if (source && destination && JSON.stringify(a ?? null) !== JSON.stringify(b ?? null)) {
    throw new NotComparableError(
      `the collections order their _ids differently (collation ${JSON.stringify(a ?? 'simple')} on the source, ${JSON.stringify(b ?? 'simple')} on the destination)`,
    );
  }
  return a ?? b;
}

/** What listCollections says of the collection; undefined if there is none. */
async function info(client: MongoClient, ns: Namespace): Promise<{ type?: string; options?: { collation?: CollationOptions } } | undefined> {
  const [found] = await client.db(ns.db).listCollections({ name: ns.coll }, { nameOnly: false }).toArray();
  return found;
}
