// Re-checking what the scan found, so that a live link never shows a false difference. The scan
// reads the two sides of a range at slightly different moments, while writes go on: a document
// written in between looks different, missing or extra. Each one found is read again, in rounds:
//
//   1. the source's documents, in a snapshot (time tS);
//   2. once the link has applied everything the source logged up to tS (./wait-for-checkpoint.ts),
//      the destination's, in a snapshot (time tD);
//   3. with a link the other way between the same collections, once it has applied what the
//      destination logged up to tD, and in any case: the source's again.
//
// A document is equal if the destination's copy equals the source's of step 1 or of step 3 (a
// link applying writes made after tS can only bring it closer to step 3). It differs if it
// does not, and the source's copy did not change from step 1 to step 3 (so nothing on its way
// can mend it), and the wait did not run out (when no run is alive to apply anything, the
// documents are compared as they are). Otherwise it is changing, and read again in the next
// round; one that is still changing after the last round is reported as such, never as equal.

import { setTimeout as sleep } from 'node:timers/promises';
import { BSON, type Document, type MongoClient, type Timestamp } from 'mongodb';
import { EXACT_DECODE } from '../bson/raw.ts';
import type { Namespace } from '../namespace.ts';
import { readDocuments, sameBytes, sameContent } from './documents.ts';
import type { Candidate, CandidateKind } from './match.ts';
import { waitForCheckpoint, type Follower, type WaitOptions, WAIT_DEFAULTS } from './wait-for-checkpoint.ts';

/** A document that differs for good, with both sides' copies as last read. */
export interface Finding extends Candidate {
  /** Undefined where the side has no such document. */
  source: Buffer | undefined;
  destination: Buffer | undefined;
}

export interface RecheckResult {
  findings: Finding[];
  /** Documents that changed in every round. */
  changing: Candidate[];
}

export interface RecheckOptions {
  /** At most this many rounds... */
  rounds: number;
  /** ... and no new round after this long. */
  timeoutMS: number;
  /** The pause before round n is n times this. */
  pauseMS: number;
  /** `_id`s per query. */
  chunk: number;
  wait: WaitOptions;
}

export const RECHECK_DEFAULTS: RecheckOptions = { rounds: 10, timeoutMS: 30_000, pauseMS: 50, chunk: 1_000, wait: WAIT_DEFAULTS };

/** The two collections of a link, and who replicates between them. */
export interface LinkSides {
  source: MongoClient;
  src: Namespace;
  destination: MongoClient;
  dst: Namespace;
  /** The link: source into destination. */
  forward: Follower;
  /** A link the other way between the same two collections, if there is one. */
  reverse: Follower | undefined;
}

export async function recheck(sides: LinkSides, candidates: readonly Candidate[], options: RecheckOptions = RECHECK_DEFAULTS): Promise<RecheckResult> {
  const findings: Finding[] = [];
  let open = [...candidates];
  const deadline = Date.now() + options.timeoutMS;
  for (let round = 1; open.length > 0 && round <= options.rounds; round++) {
    if (round > 1) {
      if (Date.now() >= deadline) break;
      await sleep(options.pauseMS * round);
    }
    const next: Candidate[] = [];
    for (let at = 0; at < open.length; at += options.chunk) {
      const chunk = open.slice(at, at + options.chunk);
      const read = await readRound(sides, chunk, options.wait);
      for (const candidate of chunk) {
        const s1 = read.sourceBefore.get(candidate.key);
        const d = read.destination.get(candidate.key);
        const s2 = read.sourceAfter.get(candidate.key);
        if (sameContent(s1, d) || sameContent(s2, d)) continue;
        if (read.settled && sameBytes(s1, s2)) findings.push({ ...candidate, kind: kindOf(s2, d), source: s2, destination: d });
        else next.push(candidate);
      }
    }
    open = next;
  }
  // Settled in different rounds: back in `_id` order.
  findings.sort((x, y) => x.order - y.order);
  return { findings, changing: open };
}

interface RoundReads {
  sourceBefore: Map<string, Buffer>;
  destination: Map<string, Buffer>;
  sourceAfter: Map<string, Buffer>;
  /** No wait ran out: what was read is final, as far as the links can tell. */
  settled: boolean;
}

async function readRound(sides: LinkSides, chunk: readonly Candidate[], wait: WaitOptions): Promise<RoundReads> {
  const ids = chunk.map((c) => (BSON.deserialize(c.id, EXACT_DECODE) as Document)._id as unknown);
  const before = await snapshotRead(sides.source, sides.src, ids);
  const forward = await waitForCheckpoint(sides.forward, before.at, wait);
  const destination = await snapshotRead(sides.destination, sides.dst, ids);
  const reverse = sides.reverse ? await waitForCheckpoint(sides.reverse, destination.at, wait) : 'applied';
  const after = await readDocuments(sides.source, sides.src, ids);
  return { sourceBefore: before.docs, destination: destination.docs, sourceAfter: after, settled: forward !== 'behind' && reverse !== 'behind' };
}

/** The documents of `ids` in `ns`, read in one snapshot, and its time. */
async function snapshotRead(client: MongoClient, ns: Namespace, ids: readonly unknown[]): Promise<{ docs: Map<string, Buffer>; at: Timestamp }> {
  const session = client.startSession({ snapshot: true });
  try {
    const docs = await readDocuments(client, ns, ids, { session });
    // The driver keeps the snapshot's time (the server's atClusterTime) on the session, for
    // the session's later reads; its typings leave the property out.
    const at = (session as unknown as { snapshotTime?: Timestamp }).snapshotTime;
    if (!at) throw new Error(`the server gave no snapshot time for a read of ${ns.ns}`);
    return { docs, at };
  } finally {
    await session.endSession();
  }
}

function kindOf(source: Buffer | undefined, destination: Buffer | undefined): CandidateKind {
  if (!destination) return 'missing';
  return source ? 'different' : 'extra';
}
