// A document kept as its BSON and decoded only when something first reads it: an insert's `o`,
// which the write path sends on as the bytes it came in (../apply/write-commands.ts), so that
// most inserted documents are never decoded at all. Objects that hold one expose the document
// through a getter of their class (RawInsert's and RawUpdate's `o`), so that readers see a plain document; with
// no setter, so that nothing can make the document and the bytes that are written differ (an
// assignment throws).

import { BSON, type Document } from 'mongodb';
import { keyElements, stringElement } from './raw.ts';

/**
 * An insert whose document is a RawDocument, as an operation of an `applyOps` or as a change:
 * `o` is a getter of the class rather than of each object (thousands are made a batch, and an
 * object literal with a getter costs more to make than the document took to decode).
 */
export class RawInsert {
  readonly op = 'i' as const;

  constructor(
    readonly ns: string,
    readonly raw: RawDocument,
  ) {}

  get o(): Document {
    return this.raw.document;
  }
}

/**
 * An update logged alone whose `o` is a RawDocument, as an entry and as a change: the writer
 * sends a `$v: 2` diff of top-level fields on as the bytes of its `$set` and `$unset`, and a
 * replacement as its document's bytes (../apply/update-bytes.ts, translateUpdateBytes), so `o` is
 * decoded only where something else reads it. A getter of the class, as RawInsert's.
 */
export class RawUpdate {
  readonly op = 'u' as const;

  constructor(
    readonly ns: string,
    readonly rawUpdate: RawDocument,
  ) {}

  get o(): Document {
    return this.rawUpdate.document;
  }
}

export class RawDocument {
  private decoded: Document | undefined;

  constructor(
    /** The document's BSON. */
    readonly bytes: Uint8Array,
    private readonly options: BSON.DeserializeOptions,
  ) {}

  /** Its `__mmm` if that is a string (a tag), read from the bytes without decoding the document. */
  get tag(): string | undefined {
    return stringElement(this.bytes, keyElements(this.bytes).tag);
  }

  /** The document decoded, the first time it is asked for (then the same object). */
  get document(): Document {
    return (this.decoded ??= BSON.deserialize(this.bytes, this.options));
  }
}
