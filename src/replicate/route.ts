// Routing: which changes read from a source go to which collection of the destination, and which
// must not, so that every write reaches every server that replicates its namespace exactly once.
//
// Three rules, for a change read on source S for destination D:
// 1. It must match a link: its namespace is the link's source namespace and its kind (i, u, d;
//    a replacement is a `u`) is among the link's ops.
// 2. A write that came from D is never sent back to D (its origin is D).
// 3. A write S got from elsewhere (origin O, neither S nor D) is relayed to D only if D has no
//    link of its own from O for that namespace and kind: when it has, O delivers it directly.
//    In a ring (A->B->C->A) a write from A reaches C through B; in a full mesh it travels only
//    the direct links. (Topologies where a server can hear of a write through two relays and
//    has no direct link to its origin, a "diamond", are not made exact by this rule: README.)

import type { Timestamp } from 'mongodb';
import type { Link } from '../config/store.ts';
import type { Change } from '../oplog/entry.ts';
import { carriedTag, makeTag } from './tag.ts';

export type OpKind = 'i' | 'u' | 'd';

/** A change routed to one collection of the destination, with the tag the write must carry. */
export interface RoutedChange {
  change: Change;
  /** Namespace on the destination. */
  ns: string;
  tag: string;
  /** The server the write first happened on. */
  origin: string;
  /** Conflicts with the destination's own versions are resolved (../conflict/scope.ts). */
  resolve: boolean;
}

export interface RouterOptions {
  /** UUID of the destination server. */
  destinationId: string;
  /** UUID of the source server being read. */
  sourceId: string;
  /** Every link the destination has, by source server UUID (rule 3 looks at the others). */
  linksBySource: ReadonlyMap<string, readonly Link[]>;
  /** Whether a link's writes are checked for conflicts (../conflict/scope.ts); none by default. */
  resolves?: (link: Link) => boolean;
}

export class Router {
  private readonly bySourceNs = new Map<string, Link[]>();
  /** Per link, the position after which its changes are replicated (see startAt). */
  private readonly from = new Map<Link, Timestamp>();
  /** Per link, whether it resolves: asked once, not for every change (the answer walks the topology's links). */
  private readonly resolving = new Map<Link, boolean>();

  constructor(private readonly options: RouterOptions) {
    for (const link of options.linksBySource.get(options.sourceId) ?? []) {
      // Being copied: followed from the copy's snapshot once the copy is done (../copy/copy.ts).
      if (link.copying) continue;
      const list = this.bySourceNs.get(link.src) ?? [];
      list.push(link);
      this.bySourceNs.set(link.src, list);
      this.resolving.set(link, options.resolves?.(link) ?? false);
    }
  }

  /**
   * Where reading must start for a loop whose checkpoint is `checkpoint` (undefined: never run),
   * and from then on which changes each link takes. A link whose `since` is set is not covered
   * by the checkpoint yet: it takes the changes after its `since`, which may lie before the
   * checkpoint (a link added while a run went on); every other link takes those after the
   * checkpoint. Reading starts at the earliest of these.
   */
  startAt(checkpoint: Timestamp | undefined): Timestamp | undefined {
    let start: Timestamp | undefined;
    for (const links of this.bySourceNs.values()) {
      for (const link of links) {
        const from = link.since ?? checkpoint;
        if (from === undefined) continue;
        this.from.set(link, from);
        if (start === undefined || from.lessThan(start)) start = from;
      }
    }
    return start;
  }

  /** The links whose `since` the checkpoint `ts` has passed: the store may forget their `since`. */
  coveredBy(ts: Timestamp): Link[] {
    return [...this.from.keys()].filter((link) => link.since !== undefined && link.since.lessThanOrEqual(ts));
  }

  /** Namespaces this source is read for. */
  get sourceNamespaces(): string[] {
    return [...this.bySourceNs.keys()];
  }

  route(change: Change): RoutedChange[] {
    const links = this.bySourceNs.get(change.ns);
    if (!links) return [];
    const { destinationId, sourceId } = this.options;
    const origin = change.origin ?? sourceId;
    if (origin === destinationId) return [];
    const routed: RoutedChange[] = [];
    for (const link of links) {
      if (!link.ops.includes(change.op)) continue;
      const from = this.from.get(link);
      if (from !== undefined && !change.ts.greaterThan(from)) continue;
      if (origin !== sourceId && this.hasDirectLink(origin, link.dst, change.op)) continue;
      routed.push({ change, ns: link.dst, tag: versionTag(change, origin, sourceId), origin, resolve: this.resolving.get(link)! });
    }
    return routed;
  }

  private hasDirectLink(origin: string, dstNs: string, op: OpKind): boolean {
    return (this.options.linksBySource.get(origin) ?? []).some((l) => l.dst === dstNs && l.ops.includes(op));
  }
}

/**
 * The tag of a write: its version (./tag.ts). A user's write on the source is versioned by its
 * own entry; a relayed one keeps the origin's version, which the source's write carries.
 */
function versionTag(change: Change, origin: string, sourceId: string): string {
  if (origin !== sourceId) {
    const carried = change.tag ?? carriedTag(change);
    if (carried !== undefined && carried.startsWith(`${origin}:`)) return carried;
  }
  return makeTag(origin, change.ts);
}
