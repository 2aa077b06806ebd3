// Which links resolve conflicts: those whose destination's own writes reach back to the source,
// through one link or several (two servers both ways, a ring, a mesh), for every kind of write
// the link carries: a version that wins on the destination must travel back to the source, or
// the source would keep the one that lost. There, every server is a master and must end on the
// same version, so a concurrent write may lose. A link with no such way back makes its
// destination a replica: its source's writes are applied as they come, as they always were.

/** A link as the whole topology holds it: from `src` on server `source` to `dst` on `destination`. */
export interface LinkEdge {
  source: string;
  destination: string;
  src: string;
  dst: string;
  /** The kinds of write it carries: a subset of `iud`. */
  ops: string;
}

/**
 * Whether writes made on the link's destination collection reach its source collection,
 * following `edges`; with `complete` false (some server's links could not be read), a link
 * whose way back is not found is taken to have one, so that no master's version is overwritten
 * unchecked.
 */
export function hasWayBack(edges: readonly LinkEdge[], complete: boolean): (link: LinkEdge) => boolean {
  return (link) => {
    if (!complete) return true;
    // Only links that carry every kind of write this one does.
    const next = new Map<string, string[]>();
    for (const e of edges) {
      if (![...link.ops].every((op) => e.ops.includes(op))) continue;
      const from = node(e.source, e.src);
      const list = next.get(from) ?? [];
      list.push(node(e.destination, e.dst));
      next.set(from, list);
    }
    const target = node(link.source, link.src);
    const seen = new Set<string>();
    const queue = [node(link.destination, link.dst)];
    while (queue.length > 0) {
      const at = queue.pop()!;
      if (at === target) return true;
      if (seen.has(at)) continue;
      seen.add(at);
      queue.push(...(next.get(at) ?? []));
    }
    return false;
  };
}

function node(server: string, ns: string): string {
  return `${server}\u0000${ns}`;
}
