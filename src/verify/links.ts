// Which links `verify` compares, and each one's two sides: the collections, and the runs that
// replicate between them (the link itself, and one the other way between the same two
// collections, if the source has it), which ./recheck.ts waits for.

import type { MongoClient } from 'mongodb';
import type { Link, ReplicationConfigStore } from '../config/store.ts';
import { parseNamespace } from '../namespace.ts';
import type { ServerSpec, Topology } from '../topology.ts';
import { repairLink, verifyLink, VERIFY_DEFAULTS, type VerifyOptions } from './link.ts';
import type { LinkSides } from './recheck.ts';
import { errorReport, linkReport, type LinkNames, type LinkReport, type VerifyReport } from './report.ts';

/** One link, as its destination keeps it. */
export interface SelectedLink {
  /** Undefined if the topology names no server with the link's source id. */
  source: ServerSpec | undefined;
  sourceId: string;
  destination: ServerSpec;
  link: Link;
}

/** What verify reaches the servers through. */
export interface Connections {
  client(server: ServerSpec): MongoClient;
  store(server: ServerSpec): ReplicationConfigStore;
}

export interface VerifyLinksOptions {
  /** Repair what differs, making it equal to this server's documents (the source or the destination of every link). */
  prefer?: ServerSpec;
  verify?: VerifyOptions;
}

/** Every link of every server of the topology, by destination in the topology's order. */
export async function allLinks(topology: Topology, connections: Connections): Promise<SelectedLink[]> {
  const selected: SelectedLink[] = [];
  for (const destination of topology.servers) {
    for (const config of await connections.store(destination).sources()) {
      for (const link of config.links) selected.push({ source: topology.byId(config.sourceId), sourceId: config.sourceId, destination, link });
    }
  }
  return selected;
}

/** Verifies (and repairs) each link in turn; `onLink` gets each report as it is made. */
export async function verifyLinks(
  selected: readonly SelectedLink[],
  connections: Connections,
  options: VerifyLinksOptions,
  onLink: (report: LinkReport) => void = () => {},
): Promise<VerifyReport> {
  const links: LinkReport[] = [];
  for (const one of selected) {
    const report = await verifyOne(one, connections, options);
    links.push(report);
    onLink(report);
  }
  return { equal: links.every((l) => l.equal), links };
}

async function verifyOne(selected: SelectedLink, connections: Connections, options: VerifyLinksOptions): Promise<LinkReport> {
  const { source, destination, link } = selected;
  const names: LinkNames = { source: source?.name ?? selected.sourceId, src: link.src, destination: destination.name, dst: link.dst };
  if (!source) return errorReport(names, `the topology names no server with id ${selected.sourceId}`);
  // Half copied, the destination lacks documents by design, and no run follows the link yet.
  if (link.copying) return errorReport(names, 'its copy has not finished (the same `replicate --copy` resumes it): not compared');
  try {
    const sides = await sidesOf(source, destination, link, connections);
    const verify = options.verify ?? VERIFY_DEFAULTS;
    const outcome = await verifyLink(sides, verify);
    const { prefer } = options;
    if (!prefer || outcome.findings.length === 0) return linkReport(names, outcome);
    const preferSource = prefer.id === source.id;
    const repaired = await repairLink(sides, outcome.findings, preferSource ? 'source' : 'destination', prefer.id, verify);
    return linkReport(names, outcome, { outcome: repaired, prefer: prefer.name, target: preferSource ? destination.name : source.name });
  } catch (err) {
    return errorReport(names, err instanceof Error ? err.message : String(err));
  }
}

async function sidesOf(source: ServerSpec, destination: ServerSpec, link: Link, connections: Connections): Promise<LinkSides> {
  const [sourceClient, destinationClient] = [connections.client(source), connections.client(destination)];
  const back = await connections.store(source).source(destination.id);
  const reverse = back?.links.some((l) => l.src === link.dst && l.dst === link.src);
  return {
    source: sourceClient,
    src: parseNamespace(link.src),
    destination: destinationClient,
    dst: parseNamespace(link.dst),
    forward: { source: sourceClient, sourceId: source.id, destination: destinationClient, store: connections.store(destination) },
    reverse: reverse ? { source: destinationClient, sourceId: destination.id, destination: sourceClient, store: connections.store(source) } : undefined,
  };
}
