// A bounded queue between reading and applying: the reader runs ahead of the applier by at most
// so many oplog entries and so many bytes of them, so reading (and decoding) overlaps applying,
// yet a backlog of any size costs a bounded amount of memory: when the queue is full the reader
// waits (backpressure). Both bounds, because entries range from a hundred bytes to 16 MB: a
// count alone lets a backlog of large documents take gigabytes.

export interface QueueItem {
  /** Oplog entries the item stands for. */
  weight: number;
  /** Their size as BSON. */
  bytes: number;
}

export interface ReadAheadCapacity {
  entries: number;
  bytes: number;
}

export class ReadAheadQueue<T extends QueueItem> {
  private readonly items: T[] = [];
  private weight = 0;
  private bytes = 0;
  private failure: { error: unknown } | undefined;
  private closed = false;
  private ended = false;
  /** Wakes the consumer waiting for an item, or the producer waiting for room. */
  private wakeConsumer: (() => void) | undefined;
  private wakeProducer: (() => void) | undefined;

  constructor(private capacity: ReadAheadCapacity) {}

  /** New bounds, from the next push on; a reader waiting for room tries again. */
  resize(capacity: ReadAheadCapacity): void {
    this.capacity = capacity;
    this.wake('producer');
  }

  /** Whether the reader is waiting for room: the bounds, not the reading, are what holds it up. */
  get full(): boolean {
    return this.wakeProducer !== undefined;
  }

  /**
   * Adds an item; waits while it would take the queue over either bound. An empty queue admits
   * any item, so that one entry larger than the bounds cannot stop replication. Returns false
   * once the queue is closed.
   */
  async push(item: T): Promise<boolean> {
    while (!this.closed && this.items.length > 0 && !this.fits(item)) {
      await new Promise<void>((resolve) => (this.wakeProducer = resolve));
    }
    if (this.closed) return false;
    this.items.push(item);
    this.weight += item.weight;
    this.bytes += item.bytes;
    this.wake('consumer');
    return true;
  }

  /** The producer failed: the consumer's next `take` throws `error` (after the queued items). */
  fail(error: unknown): void {
    this.failure ??= { error };
    this.wake('consumer');
  }

  /** The producer is done: once the queued items are taken, `take` returns none. */
  end(): void {
    this.ended = true;
    this.wake('consumer');
  }

  /** The consumer is gone: a waiting producer, and any later `push`, returns false. */
  close(): void {
    this.closed = true;
    this.wake('producer');
    this.wake('consumer');
  }

  /**
   * Waits for at least one item and takes the leading items, as many as `accept` lets through
   * (the first is always taken). Once the queue is empty: throws the producer's failure, or
   * returns no items if the producer ended or the queue was closed.
   */
  async take(accept: (taken: readonly T[], next: T) => boolean): Promise<T[]> {
    while (this.items.length === 0) {
      if (this.failure) throw this.failure.error;
      if (this.ended || this.closed) return [];
      await new Promise<void>((resolve) => (this.wakeConsumer = resolve));
    }
    const taken: T[] = [this.items.shift()!];
    while (this.items.length > 0 && accept(taken, this.items[0]!)) taken.push(this.items.shift()!);
    for (const item of taken) {
      this.weight -= item.weight;
      this.bytes -= item.bytes;
    }
    this.wake('producer');
    return taken;
  }

  get size(): number {
    return this.items.length;
  }

  private fits(item: T): boolean {
    return this.weight + item.weight <= this.capacity.entries && this.bytes + item.bytes <= this.capacity.bytes;
  }

  private wake(who: 'consumer' | 'producer'): void {
    const wake = who === 'consumer' ? this.wakeConsumer : this.wakeProducer;
    if (who === 'consumer') this.wakeConsumer = undefined;
    else this.wakeProducer = undefined;
    wake?.();
  }
}
