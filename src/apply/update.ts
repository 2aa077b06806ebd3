// Translating: the `o` of an oplog update entry in, one update for the destination out, tagged.
//
// `o` comes in three forms (OPLOG.md, "Updates"), told apart by their structure only,
// never by "a key starts with `$`" (since 5.0 a document may hold `$`-prefixed field names):
//   - replacement: the whole new document, so it always has `_id` (replayed with replaceOne, or
//     with a pipeline's `$replaceWith` if it has a top-level `$` field, which replaceOne refuses);
//   - `$v: 2` (5.0+): `{$v: 2, diff}`, the diff format of the server's
//     src/mongo/db/update/document_diff_serialization.{h,cpp};
//   - `$v: 1` (4.x): `{$v: 1, $set?, $unset?}`, which secondaries apply as a classic update.
//
// A `$v: 2` diff is replayed with the rules of the server's applier,
// src/mongo/db/update/document_diff_applier.cpp, as one update computed on the destination:
//   object level: `d` removes the field; `u` replaces it in place, or appends it if absent;
//     `i` removes it wherever it is and appends it, after the absent `u` fields, in listed order;
//     `s<name>` applies a sub-diff to the field if it has the matching type, sets it to null on
//     a type mismatch, and does nothing if the field is absent;
//   array level: `l` truncates or pads with nulls to that length; `u<k>` sets element k and
//     `s<k>` applies a sub-diff to it (null on a type mismatch or past the old end); indices
//     past the old end with no entry become null.
//
// Three ways to write it, chosen per entry:
//   - a classic modifier (`$set`/`$unset` of top-level fields), only when that provably yields
//     what the applier yields, on any destination document. So: no `i`, because the server's
//     diff calculator also logs as `i` an existing field that a pipeline moved to the end (a
//     `$set` would leave it in place); only field names a path can reach (not empty, no `.`, no
//     leading `$`); and no sub-diff, because a replay (after a crash or a lost server, mmm
//     applies again from its checkpoint) meets documents already past the entry: where a later
//     write made a field a scalar, `$set` of a dotted path through it is refused (PathNotViable)
//     and the whole update with it, its other fields included, and the replay ends different
//     from the source. The applier, and so the pipeline, puts null there and goes on, as the
//     server's own oplog application does; the later write then overwrites the null;
//   - otherwise an aggregation-pipeline update: one `$replaceWith` whose expression rebuilds each
//     changed object with `$objectToArray` / `$arrayToObject` and each changed array with
//     `$concatArrays`. Every value from the oplog is wrapped in `$literal`, so a string starting
//     with `$` or an object with `$` keys is taken as data. The nesting of the expression grows
//     with the depth of the diff (7 levels per level), not with its number of changes;
//   - a rebuild, for a diff whose pipeline would nest deeper than the server takes in a command
//     (MAX_PIPELINE_DEPTH: diffs deeper than about 25 levels, where mongod 6.0 stores documents
//     nesting up to 180): the writer reads the destination's document and writes it back whole,
//     with the diff applied in memory by the same rules (./diff-apply.ts), within its
//     destination transaction, so that no other write comes between the read and the write.
// All give the source's document when the destination's equals the source's pre-image. On any
// other document (a replay, concurrent writes) the pipeline and the rebuild follow the applier's
// rules above; the modifier, top-level only, is never refused and sets the same values, though
// fields it adds that the document lacked may come in another order (`$set` sorts new fields).
//
// The tag: every write carries `__mmm: tag`. A top-level `__mmm` change from the source is
// dropped, and the tag is set in place if the destination has `__mmm`, else appended last.

import { DBRef, type Document } from 'mongodb';
import { RawDocument } from '../bson/lazy-document.ts';
import { taggedBytes } from '../bson/raw.ts';
import { UnsupportedOplogEntryError } from '../errors.ts';
import { ENTRY_DECODE } from '../oplog/entry.ts';
import { TAG_FIELD } from '../replicate/tag.ts';
import { applyParsedDocumentDiff } from './diff-apply.ts';
import { entriesOf, parseDocumentDiff, type ArrayDiff, type Diff, type DocumentDiff } from './diff-parse.ts';

export type UpdateSpec =
  // For collection.replaceOne({_id}, document). An insert that came as bytes has `bytes`, its
  // document as BSON, tagged: sent as it is, `document` then decoded from it only when read.
  | { kind: 'replacement'; document: Document; bytes?: Uint8Array }
  // Classic {$set, $unset} for updateOne. One made from the entry's bytes (./update-bytes.ts)
  // has `bytes`, sent as they are, `update` then decoded from them only when read.
  | { kind: 'modifier'; update: Document; bytes?: Uint8Array }
  | { kind: 'pipeline'; pipeline: Document[] } // aggregation-pipeline update for updateOne
  // A `$v: 2` diff (`o.diff`) too deep for a pipeline: read the destination's document, then
  // write rebuildDocument(current, spec, tag) in its place (in the same transaction).
  | { kind: 'rebuild'; diff: Document };

/**
 * `document`'s fields but a source `__mmm`, in order, then the tag. Every insert and replacement
 * is copied here: a loop over the keys, several times cheaper in V8 than the rest pattern and
 * spread it replaces (about 0.3 µs against 1.5 µs a document of 1 KB, measured in isolation).
 */
function tagged(document: Document, tag: string): Document {
  const copy: Document = {};
  for (const name of Object.keys(document)) {
    if (name === TAG_FIELD) continue;
    // An assignment to `__proto__` would set the copy's prototype, not a field of that name.
    if (name === '__proto__') Object.defineProperty(copy, name, { value: document[name], enumerable: true, writable: true, configurable: true });
    else copy[name] = document[name];
  }
  copy[TAG_FIELD] = tag;
  return copy;
}

/**
 * The document of an insert logged as bytes (`raw`), tagged as translateUpdate tags a decoded
 * one, without decoding it: a replacement carrying its BSON, and its `_id`. Undefined for a
 * document with a top-level `$` name, which only translateUpdate's pipeline can write, and for
 * one whose `_id` would not be found by its decoded value (taggedBytes, `exactId`), which is
 * written decoded, as the filters of its later writes are.
 */
export function translateInsert(raw: Uint8Array, tag: string): { id: unknown; spec: UpdateSpec } | undefined {
  const { bytes, id, exactId, dollarName, repeatedTag } = taggedBytes(raw, tag);
  if (dollarName || !exactId || repeatedTag) return undefined;
  return { id, spec: new BytesReplacement(bytes) };
}

/** The replacement of an insert that came as bytes: its document decoded only when read (a getter of the class, not of each object: one per insert). */
class BytesReplacement {
  readonly kind = 'replacement' as const;
  private readonly raw: RawDocument;

  constructor(readonly bytes: Uint8Array) {
    this.raw = new RawDocument(bytes, ENTRY_DECODE);
  }

  get document(): Document {
    return this.raw.document;
  }
}

/** Turns the `o` of an oplog update entry into one update for the destination, tagged. */
export function translateUpdate(o: Document, tag: string): UpdateSpec {
  if (Object.hasOwn(o, '_id')) {
    const document = tagged(o, tag);
    // A replacement may not hold a top-level `$` field (server error 52, DollarPrefixedFieldName;
    // the driver even takes a leading one for an operator), but a pipeline's output may.
    return Object.keys(document).some((name) => name.startsWith('$'))
      ? { kind: 'pipeline', pipeline: [{ $replaceWith: { $literal: document } }] }
      : { kind: 'replacement', document };
  }
  const version = Number(o.$v);
  if (version === 2) {
    expectOnlyKeys(o, ['$v', 'diff'], '$v: 2 update');
    const diff = withoutTopLevelTag(parseDocumentDiff(o.diff, 'diff'));
    const modifier = classicModifier(diff);
    if (modifier) {
      modifier.$set[TAG_FIELD] = tag;
      return { kind: 'modifier', update: withoutEmpty(modifier) };
    }
    const rebuilt = documentExpression('$$ROOT', diff, new VariableNames());
    const pipeline = [{ $replaceWith: { $setField: { field: TAG_FIELD, input: rebuilt, value: { $literal: tag } } } }];
    return nestingDepth(pipeline) > MAX_PIPELINE_DEPTH ? { kind: 'rebuild', diff: o.diff } : { kind: 'pipeline', pipeline };
  }
  if (version === 1) {
    expectOnlyKeys(o, ['$v', '$set', '$unset'], '$v: 1 update');
    // Applied as secondaries of 4.x apply it: a classic update with these resulting values.
    const $set = Object.fromEntries(entriesOf(o.$set ?? {}, '$set').filter(([path]) => !touchesTag(path)));
    const $unset = Object.fromEntries(entriesOf(o.$unset ?? {}, '$unset').filter(([path]) => !touchesTag(path)));
    return { kind: 'modifier', update: withoutEmpty({ $set: { ...$set, [TAG_FIELD]: tag }, $unset }) };
  }
  throw new UnsupportedOplogEntryError(
    o.$v === undefined
      ? `update entry is neither a replacement (no _id) nor a $v diff: keys ${JSON.stringify(Object.keys(o))}`
      : `update entry has unknown format $v: ${String(o.$v)}`,
  );
}

/**
 * The document a 'rebuild' writes: `current`, the destination's document as it is (decoded with
 * `promoteValues: false`), with the diff applied as the server's applier does, then tagged as a
 * pipeline tags it. `current` is not changed.
 */
export function rebuildDocument(current: Document, spec: { diff: Document }, tag: string): Document {
  const rebuilt = applyParsedDocumentDiff(current, withoutTopLevelTag(parseDocumentDiff(spec.diff, 'diff')));
  // Set in place if the document has it, else appended last (`rebuilt` is a new object).
  rebuilt[TAG_FIELD] = tag;
  return rebuilt;
}

/** The top-level diff without any change to the tag field: the destination gets its own tag. */
function withoutTopLevelTag(diff: DocumentDiff): DocumentDiff {
  const keep = ([name]: [string, unknown]) => name !== TAG_FIELD;
  return {
    kind: 'document',
    deletes: diff.deletes.filter((name) => name !== TAG_FIELD),
    updates: diff.updates.filter(keep),
    inserts: diff.inserts.filter(keep),
    subDiffs: diff.subDiffs.filter(keep),
  };
}

// ---- Classic modifier: only where it is provably the same document (see the header).

interface ClassicModifier {
  $set: Document;
  $unset: Document;
}

/** The diff as `$set`/`$unset` of top-level fields, or undefined if that could differ. */
function classicModifier(diff: DocumentDiff): ClassicModifier | undefined {
  if (diff.inserts.length > 0 || diff.subDiffs.length > 0) return undefined;
  if (![...diff.deletes, ...diff.updates.map(([n]) => n)].every(isPathSafe)) return undefined;
  const modifier: ClassicModifier = { $set: {}, $unset: {} };
  // A field named `__proto__` is defined, not assigned, so that it stays a field (an assignment
  // would set the prototype); the others are assigned, which is several times cheaper.
  const put = (target: Document, path: string, value: unknown) => {
    if (path === '__proto__') Object.defineProperty(target, path, { value, enumerable: true, writable: true, configurable: true });
    else target[path] = value;
  };
  for (const name of diff.deletes) put(modifier.$unset, name, '');
  for (const [name, value] of diff.updates) put(modifier.$set, name, value);
  return modifier;
}

/** A field name a dotted path reaches as itself. */
function isPathSafe(name: string): boolean {
  return name !== '' && !name.includes('.') && !name.startsWith('$');
}

// ---- Pipeline: one expression that rebuilds the changed parts of the document.

/** Fresh `$let` variable names (they must start with a lowercase letter). */
class VariableNames {
  private next = 0;
  fresh(prefix: string): string {
    return `${prefix}${this.next++}`;
  }
}

const literal = (value: unknown) => ({ $literal: value });
const pairs = (entries: Array<[string, unknown]>) => literal(entries.map(([k, v]) => ({ k, v })));

/**
 * An expression for the object `input` (a variable or `$$ROOT`) with `diff` applied: its
 * fields as `{k, v}` pairs, deleted and inserted ones filtered out, updated and sub-diffed ones
 * replaced in place, then the absent updated ones and the inserted ones appended.
 */
function documentExpression(input: string, diff: DocumentDiff, names: VariableNames): unknown {
  const subValues = diff.subDiffs.map(([name, sub]) => ({
    name,
    variable: names.fresh('s'),
    value: subDiffExpression({ $getField: { field: literal(name), input } }, sub, names),
  }));
  const pair = names.fresh('p');
  const removed = [...diff.deletes, ...diff.inserts.map(([name]) => name)];
  let fields: unknown = { $objectToArray: input };
  if (removed.length > 0) {
    fields = { $filter: { input: fields, as: pair, cond: { $not: [{ $in: [`$$${pair}.k`, literal(removed)] }] } } };
  }
  const branches = [
    ...diff.updates.map(([name, value]) => ({ name, value: literal(value) })),
    ...subValues.map(({ name, variable }) => ({ name, value: `$$${variable}` })),
  ].map(({ name, value }) => ({ case: { $eq: [`$$${pair}.k`, literal(name)] }, then: { k: literal(name), v: value } }));
  if (branches.length > 0) {
    fields = { $map: { input: fields, as: pair, in: { $switch: { branches, default: `$$${pair}` } } } };
  }
  const parts = [fields];
  if (diff.updates.length > 0) {
    const candidate = names.fresh('q');
    const present = { $map: { input: { $objectToArray: input }, as: candidate, in: `$$${candidate}.k` } };
    parts.push({ $filter: { input: pairs(diff.updates), as: candidate, cond: { $not: [{ $in: [`$$${candidate}.k`, present] }] } } });
  }
  if (diff.inserts.length > 0) parts.push(pairs(diff.inserts));
  const body = { $arrayToObject: parts.length === 1 ? fields : { $concatArrays: parts } };
  if (subValues.length === 0) return body;
  return { $let: { vars: Object.fromEntries(subValues.map((s) => [s.variable, s.value])), in: body } };
}

/**
 * The value of a field or element that a sub-diff changes: the sub-diff applied if the value
 * has the type the sub-diff expects, else null (the applier's rule for a type mismatch, and for
 * an array element past the old end; `$type` of a missing value is "missing").
 */
function subDiffExpression(value: unknown, sub: Diff, names: VariableNames): unknown {
  const variable = names.fresh('v');
  const ref = `$$${variable}`;
  const expected = sub.kind === 'document' ? { $eq: [{ $type: ref }, 'object'] } : { $isArray: [ref] };
  const applied = sub.kind === 'document' ? documentExpression(ref, sub, names) : arrayExpression(ref, sub, names);
  return { $let: { vars: { [variable]: value }, in: { $cond: [expected, applied, null] } } };
}

/**
 * An expression for the array `input` (a variable) with `diff` applied, as the concatenation of
 * runs of old elements (null past the old end) and the changed elements, up to the new length:
 * `l` if given, else the old length or one past the last entry, whichever is larger.
 */
function arrayExpression(input: string, diff: ArrayDiff, names: VariableNames): unknown {
  const size = names.fresh('n');
  const index = names.fresh('i');
  const oldElements = (from: number, to: number | string) => ({
    $map: {
      input: { $range: [from, to] },
      as: index,
      in: { $cond: [{ $lt: [`$$${index}`, `$$${size}`] }, { $arrayElemAt: [input, `$$${index}`] }, null] },
    },
  });
  const vars: Document = { [size]: { $size: input } };
  const segments: unknown[] = [];
  let changed: unknown[] = [];
  let next = 0;
  for (const entry of diff.entries) {
    if (entry.index > next) {
      if (changed.length > 0) segments.push(changed);
      changed = [];
      segments.push(oldElements(next, entry.index));
    }
    if ('update' in entry) {
      changed.push(literal(entry.update));
    } else {
      const variable = names.fresh('e');
      vars[variable] = subDiffExpression({ $arrayElemAt: [input, entry.index] }, entry.subDiff, names);
      changed.push(`$$${variable}`);
    }
    next = entry.index + 1;
  }
  if (changed.length > 0) segments.push(changed);
  segments.push(oldElements(next, diff.length ?? `$$${size}`));
  return { $let: { vars, in: { $concatArrays: segments } } };
}

// ---- Helpers.

/**
 * The deepest pipeline sent; a deeper diff is a 'rebuild'. Measured on mongod 6.0.5: the update
 * command `{update, updates: [{q, u: <pipeline>}]}` is refused (code 15, "BSONObj exceeds maximum
 * nested object depth") from a pipeline nesting 199 levels (the pipeline array counted as one, as
 * nestingDepth counts): the server's maxBSONDepth, 200, below the command (a bulkWrite, which the
 * driver sends with `updates` as a document sequence, takes 2 levels more). 18 levels of margin
 * cover the values nestingDepth counts as scalars (a Code's scope) and other wrappings of the
 * command; a diff 25 levels deep still gives a pipeline (177 levels), one 26 deep a rebuild.
 */
const MAX_PIPELINE_DEPTH = 180;

/** How deeply objects and arrays nest in `value` (a scalar is 0), as BSON counts it. */
function nestingDepth(value: unknown): number {
  if (value instanceof DBRef) return nestingDepth(value.toJSON());
  if (typeof value !== 'object' || value === null) return 0;
  const proto = Object.getPrototypeOf(value);
  if (!Array.isArray(value) && proto !== Object.prototype && proto !== null) return 0; // Int32, ObjectId, ...
  let deepest = 0;
  for (const child of Object.values(value)) deepest = Math.max(deepest, nestingDepth(child));
  return 1 + deepest;
}

function expectOnlyKeys(o: Document, allowed: string[], what: string): void {
  const extra = Object.keys(o).filter((k) => !allowed.includes(k));
  if (extra.length > 0) throw new UnsupportedOplogEntryError(`${what} has unexpected keys ${JSON.stringify(extra)}`);
}

/** A `$v: 1` path that changes the tag field or something inside it. */
function touchesTag(path: string): boolean {
  return path === TAG_FIELD || path.startsWith(`${TAG_FIELD}.`);
}

/** Drops empty operators: the tag is always in `$set`, `$unset` may have nothing left. */
function withoutEmpty(modifier: Document): Document {
  // A loop rather than entries, filter and fromEntries: every update replayed comes through here.
  const kept: Document = {};
  for (const operator in modifier) {
    const fields = modifier[operator] as Document;
    if (Object.keys(fields).length > 0) kept[operator] = fields;
  }
  return kept;
}
