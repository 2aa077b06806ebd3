// Matching: the documents of one `_id` range, as the source and the destination return them, paired
// by `_id` and compared as bytes without `__mmm`. Both sides come in the order of their `_id`
// index, in batches, so equal collections pair up one to one, position by position, and that is
// the fast path: two scans of the documents' top-level elements and a byte comparison. A
// document missing on one side shifts the pairing; documents left unpaired wait (as a digest,
// not their bytes) until their partner comes in a later batch of the other side, or the range
// ends and they are missing or extra.
//
// `_id`s are matched by their bytes, type included, so a document whose `_id` is 1 on one side
// and 1.0 on the other is missing there and extra here: the server's index takes the two for
// equal, but they are not the same document.

import { digestWithout, documentOf, elementKey, equalWithout, keyElements, MalformedBsonError, sameValue, type KeyElements } from '../bson/raw.ts';

export type CandidateKind = 'different' | 'missing' | 'extra';

/** A document found not equal on the two sides, as the scan saw it (re-checked afterwards). */
export interface Candidate {
  kind: CandidateKind;
  /** The `_id`'s type and value bytes: its identity (../bson/raw.ts elementKey). */
  key: string;
  /** A document holding the `_id` element alone. */
  id: Buffer;
  /** Its place in `_id` order: range number, then position in the range. */
  order: number;
}

/** Positions within a range: enough for any range a scan reads. */
const RANGE_ORDER = 2 ** 32;

interface Parsed {
  bytes: Uint8Array;
  keys: KeyElements;
  /** Position on its side within the range. */
  ordinal: number;
}

interface Waiting {
  id: Buffer;
  digest: Buffer;
  ordinal: number;
}

class Side {
  window: Parsed[] = [];
  at = 0;
  ended = false;
  count = 0;
  /** Documents passed over, by `_id` key, until their partner comes. */
  readonly waiting = new Map<string, Waiting>();
  private positions: Map<string, number> | undefined;

  push(docs: readonly Uint8Array[]): void {
    const rest = this.window.slice(this.at);
    for (const bytes of docs) {
      const keys = keyElements(bytes);
      if (!keys.id) throw new MalformedBsonError('a document without _id');
      rest.push({ bytes, keys, ordinal: this.count++ });
    }
    this.window = rest;
    this.at = 0;
    this.positions = undefined;
  }

  get head(): Parsed | undefined {
    return this.window[this.at];
  }

  /** Where in the rest of the window the document of `_id` key `key` is, if it is there. */
  find(key: string): number | undefined {
    if (!this.positions) {
      this.positions = new Map();
      for (let k = this.at; k < this.window.length; k++) {
        const doc = this.window[k]!;
        this.positions.set(elementKey(doc.bytes, doc.keys.id!), k);
      }
    }
    const found = this.positions.get(key);
    return found !== undefined && found > this.at ? found : undefined;
  }

  /** Sets the head aside until its partner comes. */
  wait(): void {
    const doc = this.window[this.at++]!;
    this.waiting.set(keyOf(doc), { id: documentOf(doc.bytes, doc.keys.id!), digest: digestWithout(doc.bytes, doc.keys.tag), ordinal: doc.ordinal });
  }
}

function keyOf(doc: Parsed): string {
  return elementKey(doc.bytes, doc.keys.id!);
}

/** Pairs the documents of one range of both sides; `found` gets each one not equal. */
export class RangeMatcher {
  private readonly source = new Side();
  private readonly destination = new Side();

  constructor(
    /** The range's number: candidates are ordered by it first. */
    private readonly range: number,
    private readonly found: (candidate: Candidate) => void,
  ) {}

  /** Documents read so far on each side. */
  get counts(): { source: number; destination: number } {
    return { source: this.source.count, destination: this.destination.count };
  }

  /** Whether `side` must be read further before matching can go on. */
  needs(side: 'source' | 'destination'): boolean {
    const s = this[side];
    return !s.ended && s.head === undefined;
  }

  /** The next batch of `side`, in `_id` index order; an empty list once it has no more. */
  push(side: 'source' | 'destination', docs: readonly Uint8Array[]): void {
    if (docs.length === 0) this[side].ended = true;
    else this[side].push(docs);
    this.match();
  }

  /** Once both sides have ended: what waits for a partner is missing or extra. */
  finish(): void {
    if (!this.source.ended || !this.destination.ended) throw new Error('RangeMatcher.finish before both sides ended');
    for (const [key, w] of this.source.waiting) this.report('missing', key, w.id, w.ordinal);
    for (const [key, w] of this.destination.waiting) this.report('extra', key, w.id, w.ordinal);
    this.source.waiting.clear();
    this.destination.waiting.clear();
  }

  private report(kind: CandidateKind, key: string, id: Buffer, ordinal: number): void {
    this.found({ kind, key, id, order: this.range * RANGE_ORDER + ordinal });
  }

  private match(): void {
    const { source: S, destination: D } = this;
    for (;;) {
      const s = S.head;
      const d = D.head;
      if (s && d) {
        if (sameValue(s.bytes, s.keys.id!, d.bytes, d.keys.id!)) {
          if (!equalWithout(s.bytes, s.keys.tag, d.bytes, d.keys.tag)) this.report('different', keyOf(s), documentOf(s.bytes, s.keys.id!), s.ordinal);
          S.at++;
          D.at++;
          continue;
        }
        if (this.pairWithWaiting(s, D.waiting, s)) {
          S.at++;
          continue;
        }
        if (this.pairWithWaiting(d, S.waiting, undefined)) {
          D.at++;
          continue;
        }
        // Out of step: whichever head has its partner further on in the other window; the
        // documents before that partner are set aside.
        const inD = D.find(keyOf(s));
        if (inD !== undefined) {
          while (D.at < inD) this.setAside(D, S, false);
          continue;
        }
        const inS = S.find(keyOf(d));
        if (inS !== undefined) {
          while (S.at < inS) this.setAside(S, D, true);
          continue;
        }
        S.wait();
        D.wait();
        continue;
      }
      // One side has no more at all: the other's documents are paired with what waits, or alone.
      if (s && D.ended) {
        if (!this.pairWithWaiting(s, D.waiting, s)) this.report('missing', keyOf(s), documentOf(s.bytes, s.keys.id!), s.ordinal);
        S.at++;
        continue;
      }
      if (d && S.ended) {
        if (!this.pairWithWaiting(d, S.waiting, undefined)) this.report('extra', keyOf(d), documentOf(d.bytes, d.keys.id!), d.ordinal);
        D.at++;
        continue;
      }
      return;
    }
  }

  /** Passes over the head of `side`: paired with its partner if that waits on `other`, else set aside. */
  private setAside(side: Side, other: Side, isSource: boolean): void {
    const head = side.head!;
    if (this.pairWithWaiting(head, other.waiting, isSource ? head : undefined)) side.at++;
    else side.wait();
  }

  /**
   * Pairs `doc` with the document of the same `_id` waiting on the other side, if there is one,
   * and reports them if their contents differ. `source` is `doc` when it is the source's.
   */
  private pairWithWaiting(doc: Parsed, waiting: Map<string, Waiting>, source: Parsed | undefined): boolean {
    const key = keyOf(doc);
    const partner = waiting.get(key);
    if (!partner) return false;
    waiting.delete(key);
    if (!digestWithout(doc.bytes, doc.keys.tag).equals(partner.digest)) {
      this.report('different', key, partner.id, source ? doc.ordinal : partner.ordinal);
    }
    return true;
  }
}
