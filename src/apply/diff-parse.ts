// Parsing a `$v: 2` diff (the `diff` of an oplog update entry), checked as the server's
// DocumentDiffReader / ArrayDiffReader do (src/mongo/db/update/document_diff_serialization.cpp):
// what they refuse is refused here, so that a malformed entry stops the link instead of being
// replayed as a guess. The translator (update.ts) and the applier (diff-apply.ts) both read it.

import type { Document } from 'mongodb';
import { UnsupportedOplogEntryError } from '../errors.ts';

export interface DocumentDiff {
  kind: 'document';
  deletes: string[];
  updates: Array<[string, unknown]>;
  inserts: Array<[string, unknown]>;
  subDiffs: Array<[string, Diff]>;
}

export interface ArrayDiff {
  kind: 'array';
  /** New length (`l`), if the array is resized. */
  length: number | undefined;
  /** `u<k>` and `s<k>` entries, by strictly ascending index. */
  entries: Array<{ index: number; update: unknown } | { index: number; subDiff: Diff }>;
}

export type Diff = DocumentDiff | ArrayDiff;

/** Section letters of a document diff, in the only order the server accepts (`b` before `s`). */
const SECTION_ORDER = ['d', 'u', 'i', 'b', 's'];

function parseDiff(raw: unknown, where: string): Diff {
  const diff = asObject(raw, where);
  // document_diff_serialization.cpp, identifyType: an array diff starts with `a`.
  return Object.keys(diff)[0] === 'a' ? parseArrayDiff(diff, where) : parseDocumentDiff(diff, where);
}

/** A document diff (the top level of `o.diff`, or an `s<name>` section), parsed and checked. */
export function parseDocumentDiff(raw: unknown, where: string): DocumentDiff {
  const diff = asObject(raw, where);
  const keys = Object.keys(diff);
  if (keys.length === 0) throw malformed(where, 'the diff is empty');
  const out: DocumentDiff = { kind: 'document', deletes: [], updates: [], inserts: [], subDiffs: [] };
  const seen = new Set<string>();
  const claim = (name: string) => {
    // document_diff_applier.cpp, safeInsert: a field may appear in one section only.
    if (seen.has(name)) throw malformed(where, `field ${JSON.stringify(name)} appears in two sections`);
    seen.add(name);
  };
  let last = -1;
  for (const key of keys) {
    const section = key.length === 1 || key.startsWith('s') ? key[0]! : key;
    const order = SECTION_ORDER.indexOf(section);
    if (order < 0 || (order <= last && section !== 's')) throw malformed(where, `unexpected section ${JSON.stringify(key)}`);
    last = order;
    const value = diff[key];
    switch (section) {
      case 'd':
        for (const [name] of entriesOf(value, `${where}.d`)) {
          claim(name);
          out.deletes.push(name);
        }
        break;
      case 'u':
      case 'i':
        for (const entry of entriesOf(value, `${where}.${section}`)) {
          claim(entry[0]);
          (section === 'u' ? out.updates : out.inserts).push(entry);
        }
        break;
      case 'b':
        // Newer servers' diff readers know a `b` (binary) section, but no applier we could read
        // (document_diff_applier.cpp) applies one: rather than guess its meaning, stop.
        throw new UnsupportedOplogEntryError(`${where}: binary diff section 'b' is not supported`);
      case 's':
        claim(key.slice(1));
        out.subDiffs.push([key.slice(1), parseDiff(value, `${where}.${key}`)]);
        break;
    }
  }
  return out;
}

function parseArrayDiff(diff: Document, where: string): ArrayDiff {
  if (diff.a !== true) throw malformed(where, 'array diff header `a` must be true');
  const out: ArrayDiff = { kind: 'array', length: undefined, entries: [] };
  const keys = Object.keys(diff).slice(1);
  if (keys[0] === 'l') {
    const length = Number(diff.l);
    if (!Number.isInteger(length) || length < 0) throw malformed(where, `bad array length l: ${String(diff.l)}`);
    out.length = length;
    keys.shift();
  }
  for (const key of keys) {
    const match = /^([us])(0|[1-9][0-9]*)$/.exec(key);
    if (!match) throw malformed(where, `unexpected array diff entry ${JSON.stringify(key)}`);
    const index = Number(match[2]);
    // The applier walks the array once: indices must ascend, and stay below a new length (its
    // invariant; on 6.0.5 such an entry crashes the server that applies it).
    const previous = out.entries.at(-1)?.index ?? -1;
    if (index <= previous) throw malformed(where, `array diff index ${index} is not ascending`);
    if (out.length !== undefined && index >= out.length) throw malformed(where, `index ${index} is past new length ${out.length}`);
    out.entries.push(
      match[1] === 'u' ? { index, update: diff[key] } : { index, subDiff: parseDiff(diff[key], `${where}.${key}`) },
    );
  }
  return out;
}

function asObject(value: unknown, where: string): Document {
  const proto = typeof value === 'object' && value !== null ? Object.getPrototypeOf(value) : undefined;
  if (proto !== Object.prototype && proto !== null) throw malformed(where, 'expected an object');
  return value as Document;
}

/** The fields of an object of the entry, in order; anything else is a malformed entry. */
export function entriesOf(value: unknown, where: string): Array<[string, unknown]> {
  return Object.entries(asObject(value, where));
}

function malformed(where: string, problem: string): UnsupportedOplogEntryError {
  return new UnsupportedOplogEntryError(`malformed update entry, at ${where}: ${problem}`);
}
