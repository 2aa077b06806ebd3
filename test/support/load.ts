// A steady write load on one side of a link, for the reliability tests: inserts, random updates
// of every kind (./random-updates.ts) and deletes, on documents whose `_id`s start with the
// side's own prefix, so that two sides writing at once never write the same document (mmm does
// not resolve such conflicts; README, "What it does not handle").
//
// It keeps going when the server is away (a test stops it on purpose): a write that fails is
// counted and the load goes on. `live` is what the side should hold, exact as long as no write
// failed.

import { setTimeout as sleep } from 'node:timers/promises';
import { BSON, MongoServerError, type Collection, type Document } from 'mongodb';
import { show, splitTag, storedAll } from './bson.ts';
import { applyRandomWrite, RandomUpdates, seededRandom } from './random-updates.ts';

export interface LoadOptions {
  /** Pause after each write, in ms: sets the rate. */
  pauseMs?: number;
  /** Of the writes, the share of deletes (the rest: inserts while few documents, then updates). */
  deleteShare?: number;
}

export class WriteLoad {
  /** Writes that the server acknowledged. */
  writes = 0;
  /** Writes that failed (the server was away). */
  failures = 0;
  /** Documents of `live` found missing on this side: only a write that failed can explain one. */
  vanished = 0;
  readonly live = new Set<string>();
  private readonly random: () => number;
  private readonly updates: RandomUpdates;
  private next = 0;
  private running: Promise<void> | undefined;
  private stopped = false;

  constructor(
    private readonly collection: Collection<Document>,
    private readonly prefix: string,
    seed: number,
    private readonly options: LoadOptions = {},
  ) {
    this.random = seededRandom(seed);
    this.updates = new RandomUpdates(seed ^ 0x10ad);
  }

  /** Starts writing, or goes on after stop(). */
  start(): this {
    if (!this.running) {
      this.stopped = false;
      this.running = this.loop();
    }
    return this;
  }

  /** Stops after the write in flight. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.running;
    this.running = undefined;
  }

  private async loop(): Promise<void> {
    const pause = this.options.pauseMs ?? 2;
    const deleteShare = this.options.deleteShare ?? 0.15;
    while (!this.stopped) {
      const r = this.random();
      try {
        if (this.live.size < 30 || r < 0.25) await this.insert();
        else if (r < 1 - deleteShare) await this.update();
        else await this.delete();
        this.writes++;
      } catch (err) {
        if (err instanceof MongoServerError && err.code === 11000) throw err; // ids are unique: a bug here
        this.failures++;
        await sleep(100);
      }
      await sleep(pause);
    }
  }

  private pick(): string {
    const ids = [...this.live];
    return ids[Math.floor(this.random() * ids.length)]!;
  }

  private async insert(): Promise<void> {
    const id = `${this.prefix}${String(this.next++).padStart(6, '0')}`;
    const [doc] = this.updates.seedDocuments(1);
    await this.collection.insertOne({ ...doc, _id: id as never });
    this.live.add(id);
  }

  private async update(): Promise<void> {
    const id = this.pick();
    const current = await this.collection.find({ _id: id as never }, { raw: true }).next();
    if (!current) {
      this.vanished++;
      this.live.delete(id);
      return;
    }
    const write = this.updates.next(BSON.deserialize(current as unknown as Uint8Array, { promoteValues: false }));
    await applyRandomWrite(this.collection, id, write);
  }

  private async delete(): Promise<void> {
    const id = this.pick();
    await this.collection.deleteOne({ _id: id as never });
    this.live.delete(id);
  }
}

/**
 * How two collections differ, compared document by document as BSON bytes without `__mmm` (so
 * field order and numeric types count), or undefined if they hold the same documents.
 */
export async function differences(a: Collection<Document>, b: Collection<Document>): Promise<string | undefined> {
  const [left, right] = await Promise.all([storedAll(a), storedAll(b)]);
  const byId = (docs: Uint8Array[]) => new Map(docs.map((bytes) => [String(BSON.deserialize(bytes)._id), splitTag(bytes).rest]));
  const [l, r] = [byId(left), byId(right)];
  const onlyLeft = [...l.keys()].filter((id) => !r.has(id));
  const onlyRight = [...r.keys()].filter((id) => !l.has(id));
  if (onlyLeft.length > 0 || onlyRight.length > 0) {
    return `${l.size} and ${r.size} documents; only on the first: ${onlyLeft.slice(0, 5).join(', ')}; only on the second: ${onlyRight.slice(0, 5).join(', ')}`;
  }
  for (const [id, bytes] of l) {
    const other = r.get(id)!;
    if (!bytes.equals(other)) return `document ${id} differs:\n  ${show(bytes)}\n  ${show(other)}`;
  }
  return undefined;
}
