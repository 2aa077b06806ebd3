// Random writes on documents with nested objects and arrays, from a seed, so that a failure
// reproduces: the differential test of the update translator and the end-to-end tests drive
// MongoDB with them and compare what comes out on the other side.
//
// Each write is built from the document's current state, so most of them apply: classic
// operators ($set, $unset, $inc, $mul, $push with $each/$slice/$position, $pull, $addToSet,
// $rename, $min, $max, $pop, positional $[]), pipeline updates (several new fields in one
// stage, $unset stages, $concatArrays, $slice, $filter, fields moved to the end, reordered
// documents, $setField on `$`-prefixed, dotted and empty names) and whole replacements.
//
// Field names never look like array indices ("9"): a JavaScript object lists such keys first,
// whatever their place in the BSON document, so a document read and written back through the
// driver would have them moved (a limit of every JS client, not of what is tested here).

import { Binary, Decimal128, Double, Int32, Long, MongoServerError, ObjectId, type Collection, type Document } from 'mongodb';

/** A deterministic PRNG (mulberry32): numbers in [0, 1) from a 32-bit seed. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export type RandomWrite =
  | { kind: 'update'; label: string; update: Document | Document[] }
  | { kind: 'replacement'; label: string; document: Document };

/** Plain names, in mixed case so that the server's sorting of new fields shows. */
const NAMES = ['a', 'b', 'c', 'k', 'm', 'q', 'z', 'B', 'Z', 'aa', '_x', 'sub', 'arr', 'tags'];
/** Names only a pipeline's $setField / $getField can reach. */
const ODD_NAMES = ['$dollar', 'dot.ted', ''];

export class RandomUpdates {
  private readonly random: () => number;

  constructor(readonly seed: number) {
    this.random = seededRandom(seed);
  }

  /** `count` documents with `_id` 'doc00', 'doc01', ...: scalars of every numeric type, nested objects, arrays. */
  seedDocuments(count: number): Document[] {
    return Array.from({ length: count }, (_, k) => ({
      _id: `doc${String(k).padStart(2, '0')}`,
      ...this.object(3, 4),
      sub: { x: new Int32(k), deep: { y: this.scalar(), list: this.array(1) }, s: this.scalar() },
      arr: [new Int32(1), { x: new Int32(2), y: 'two' }, [new Int32(3)], this.scalar()],
      tags: ['red', 'green'],
      ...(this.chance(0.3) ? { [this.pick(ODD_NAMES)]: this.scalar() } : {}),
    }));
  }

  /** A random write for the document whose state is `current` (numbers as JS or BSON wrappers). */
  next(current: Document): RandomWrite {
    const s = slots(current);
    const arrays = s.filter((x) => Array.isArray(x.value));
    const numbers = s.filter((x) => isNumber(x.value));
    const objects = [{ path: '', value: current, inArray: false }, ...s.filter((x) => isObject(x.value))];
    const any = () => this.pick(s).path;
    // A pipeline reads `a.1` as field "1" of each element of `a`, not as an index: pipelines
    // get paths that go through objects only (and so never create a field named "1").
    const flat = s.filter((x) => !x.inArray);
    const flatArrays = arrays.filter((x) => !x.inArray);
    const flatObjects = objects.filter((x) => !x.inArray);
    const newFields = (count: number, within = this.pick(objects)) => {
      const free = NAMES.filter((n) => !(n in (within.value as Document)));
      return this.sample(free, count).map((n) => (within.path ? `${within.path}.${n}` : n));
    };
    // Each maker returns a write, or something falsy when the document offers it nothing to work on.
    const choices: Array<[number, () => RandomWrite | undefined | false | 0]> = [
      [6, () => s.length && this.update('$set existing', { $set: { [any()]: this.value(1) } })],
      [5, () => this.update('$set new fields', { $set: Object.fromEntries(newFields(this.int(1, 4)).map((path) => [path, this.value(1)])) })],
      [3, () => s.length && this.update('$unset', { $unset: Object.fromEntries(this.sample(s, this.int(1, 2)).map((x) => [x.path, ''])) })],
      [4, () => numbers.length && this.update('$inc', { $inc: { [this.pick(numbers).path]: new Int32(this.int(-3, 3)) } })],
      [1, () => numbers.length && this.update('$mul', { $mul: { [this.pick(numbers).path]: new Double(1.5) } })],
      [2, () => numbers.length && this.update('$min/$max', { [this.pick(['$min', '$max'])]: { [this.pick(numbers).path]: new Int32(this.int(-5, 5)) } })],
      [5, () => arrays.length && this.update('$push', { $push: { [this.pick(arrays).path]: this.pushSpec() } })],
      [2, () => arrays.length && this.pull(this.pick(arrays))],
      [2, () => arrays.length && this.update('$addToSet', { $addToSet: { [this.pick(arrays).path]: { $each: [this.scalar(), 'red'] } } })],
      [1, () => arrays.length && this.update('$pop', { $pop: { [this.pick(arrays).path]: this.pick([1, -1]) } })],
      [3, () => s.length && this.update('$rename', { $rename: { [any()]: newFields(1)[0] ?? 'renamed' } })],
      [2, () => arrays.length && this.update('$[]', { $set: { [`${this.pick(arrays).path}.$[]${this.chance(0.5) ? '.x' : ''}`]: this.scalar() } })],
      [2, () => arrays.length && this.update('$inc $[]', { $inc: { [`${this.pick(arrays).path}.$[]`]: new Int32(1) } })],
      [5, () => this.pipeline('$set stages of new fields', [{ $set: this.literals(newFields(this.int(2, 4), objects[0])) }, { $set: this.literals(newFields(1, this.pick(flatObjects))) }])],
      [3, () => flat.length && this.pipeline('$set nested', [{ $set: this.literals([...newFields(1, this.pick(flatObjects)), this.pick(flat).path]) }])],
      [2, () => flat.length && this.pipeline('$unset stage', [{ $unset: this.sample(flat, this.int(1, 2)).map((x) => x.path) }])],
      [4, () => flatArrays.length && this.concat(this.pick(flatArrays).path)],
      [2, () => flatArrays.length && this.slice(this.pick(flatArrays).path)],
      [2, () => flatArrays.length && this.filter(this.pick(flatArrays).path)],
      [3, () => this.moveToEnd(this.pick(flatObjects))],
      [2, () => this.pipeline('reorder', [{ $replaceWith: this.reordered(current) }])],
      [3, () => this.oddName()],
      [3, () => this.replacement(current)],
    ];
    const total = choices.reduce((sum, [w]) => sum + w, 0);
    for (;;) {
      let roll = this.random() * total;
      const [, make] = choices.find(([w]) => (roll -= w) < 0) ?? choices[0]!;
      const write = make();
      if (write) return write;
    }
  }

  private update(label: string, update: Document): RandomWrite {
    return { kind: 'update', label, update };
  }

  private pipeline(label: string, pipeline: Document[]): RandomWrite {
    return { kind: 'update', label, update: pipeline };
  }

  private pushSpec(): Document {
    const spec: Document = { $each: Array.from({ length: this.int(1, 3) }, () => this.value(1)) };
    if (this.chance(0.4)) spec.$slice = this.int(-6, 6);
    if (this.chance(0.3)) spec.$position = this.int(0, 3);
    return spec;
  }

  private pull(array: Slot): RandomWrite {
    const elements = array.value as unknown[];
    const target = elements.length && this.chance(0.7) ? elements[this.int(0, elements.length - 1)] : this.scalar();
    return this.update('$pull', { $pull: { [array.path]: isObject(target) ? target : { $in: [target] } } });
  }

  /** A shorter array: logged as a resize (`l`). */
  private slice(path: string): RandomWrite {
    return this.pipeline('$slice', [{ $set: { [path]: { $slice: [`$${path}`, this.int(0, 3)] } } }]);
  }

  /** Old elements kept, new ones appended: logged as a resize (`l`) with element updates. */
  private concat(path: string): RandomWrite {
    const kept = { $slice: [`$${path}`, this.int(0, 4)] };
    return this.pipeline('$concatArrays', [{ $set: { [path]: { $concatArrays: [kept, this.literal(this.array(1))] } } }]);
  }

  private filter(path: string): RandomWrite {
    const cond = { $ne: [{ $type: '$$this' }, this.pick(['string', 'int', 'object', 'array'])] };
    return this.pipeline('$filter', [{ $set: { [path]: { $filter: { input: `$${path}`, cond } } } }]);
  }

  /** An existing field removed and set again: it moves to the end and is logged in `i`. */
  private moveToEnd(within: Slot): RandomWrite | undefined {
    // Top-level fields and sub-documents only: a pipeline `$set` of `a.1` is no array index.
    if (within.path.includes('.')) return undefined;
    const names = Object.keys(within.value as Document).filter((n) => n !== '_id');
    if (names.length < 2) return undefined;
    const name = this.pick(names.slice(0, -1));
    const source = within.path ? `$${within.path}` : '$$ROOT';
    const value = this.chance(0.5) ? { $getField: { field: { $literal: name }, input: source } } : this.literal(this.value(1));
    const moved = { $setField: { field: { $literal: name }, input: { $unsetField: { field: { $literal: name }, input: source } }, value } };
    return within.path
      ? this.pipeline('move to end, nested', [{ $set: { [within.path]: moved } }])
      : this.pipeline('move to end', [{ $replaceWith: moved }]);
  }

  /** The document's fields in a shuffled order, `_id` included. */
  private reordered(doc: Document): Document {
    const names = this.shuffle(Object.keys(doc));
    return { $arrayToObject: [names.map((k) => ({ k: { $literal: k }, v: { $getField: { field: { $literal: k }, input: '$$ROOT' } } }))] };
  }

  private oddName(): RandomWrite {
    const field = { $literal: this.pick(ODD_NAMES) };
    const stage = this.chance(0.7)
      ? { $replaceWith: { $setField: { field, input: '$$ROOT', value: this.literal(this.value(1)) } } }
      : { $replaceWith: { $unsetField: { field, input: '$$ROOT' } } };
    return this.pipeline('$setField odd name', [stage]);
  }

  private replacement(current: Document): RandomWrite {
    const document: Document = { _id: current._id, ...this.object(this.int(1, 5), 2) };
    // Not '$dollar': a replacement document may not hold a top-level `$` field.
    if (this.chance(0.3)) document[this.pick(['dot.ted', ''])] = this.value(1);
    return { kind: 'replacement', label: 'replacement', document };
  }

  private literals(paths: string[]): Document {
    return Object.fromEntries(paths.map((p) => [p, this.literal(this.value(1))]));
  }

  private literal(value: unknown): Document {
    return { $literal: value };
  }

  private object(fields: number, depth: number): Document {
    return Object.fromEntries(this.sample(NAMES, fields).map((n) => [n, this.value(depth)]));
  }

  private array(depth: number): unknown[] {
    return Array.from({ length: this.int(0, 4) }, () => this.value(depth));
  }

  private value(depth: number): unknown {
    const roll = this.random();
    if (depth > 0 && roll < 0.15) return this.object(this.int(0, 3), depth - 1);
    if (depth > 0 && roll < 0.3) return this.array(depth - 1);
    return this.scalar();
  }

  private scalar(): unknown {
    const n = this.int(-100, 100);
    return this.pick<() => unknown>([
      () => new Int32(n),
      () => new Double(n),
      () => new Double(n + 0.25),
      () => Long.fromNumber(n * 1_000_000_007),
      () => Decimal128.fromString(`${n}.10`),
      () => this.pick(['red', 'green', '$notAPath', 'a.b', '']),
      () => this.chance(0.5),
      () => null,
      () => new Date(1_700_000_000_000 + n * 1000),
      () => new ObjectId(Math.abs(n).toString(16).padStart(24, '0')),
      () => new Binary(Buffer.from([n & 0xff, 1, 2])),
      () => ({ $notAnOperator: new Int32(n), 'dotted.key': 'x' }),
    ])();
  }

  private int(min: number, max: number): number {
    return min + Math.floor(this.random() * (max - min + 1));
  }

  private chance(p: number): boolean {
    return this.random() < p;
  }

  private pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.random() * items.length)]!;
  }

  private shuffle<T>(items: readonly T[]): T[] {
    const out = [...items];
    for (let k = out.length - 1; k > 0; k--) {
      const j = Math.floor(this.random() * (k + 1));
      [out[k], out[j]] = [out[j]!, out[k]!];
    }
    return out;
  }

  private sample<T>(items: readonly T[], count: number): T[] {
    return this.shuffle(items).slice(0, count);
  }
}

/**
 * Applies a random write to the document `_id: id`. True if it changed the document (so the
 * source logged one update entry); false if it changed nothing or the server refused it, as it
 * does for a shape the operator does not fit ($inc of a string, $push to an object).
 */
export async function applyRandomWrite(collection: Collection<Document>, id: string, write: RandomWrite): Promise<boolean> {
  try {
    const result =
      write.kind === 'replacement'
        ? await collection.replaceOne({ _id: id as never }, write.document)
        : await collection.updateOne({ _id: id as never }, write.update);
    return result.modifiedCount === 1;
  } catch (err) {
    if (err instanceof MongoServerError) return false;
    throw err;
  }
}

interface Slot {
  path: string;
  value: unknown;
  /** The path goes through an array element. */
  inArray: boolean;
}

/** Every field and element a dotted path can reach, `_id` aside, down to a few levels. */
function slots(doc: Document | unknown[], prefix = '', inArray = false, depth = 0): Slot[] {
  if (depth > 4) return [];
  const entries = Array.isArray(doc) ? doc.map((v, k) => [String(k), v] as const) : Object.entries(doc);
  return entries.flatMap(([name, value]) => {
    if ((!prefix && name === '_id') || name === '' || name.includes('.') || name.startsWith('$')) return [];
    const path = prefix + name;
    const slot = { path, value, inArray: inArray || Array.isArray(doc) };
    const below = Array.isArray(value) || isObject(value) ? slots(value as Document, `${path}.`, slot.inArray, depth + 1) : [];
    return [slot, ...below];
  });
}

function isObject(value: unknown): value is Document {
  return typeof value === 'object' && value !== null && Object.getPrototypeOf(value) === Object.prototype;
}

function isNumber(value: unknown): boolean {
  return typeof value === 'number' || value instanceof Int32 || value instanceof Double || value instanceof Long || value instanceof Decimal128;
}
