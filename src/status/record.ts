// What `run` records about each of its loops, next to the loop's checkpoint in the destination's
// metadata document (`local.mmm`, one per source server), so that `mmm status` can tell what
// replication is doing from any machine, whether `run` is running or not:
//
//   status: {state: 'running', heartbeat: Date, since: Date, every: 5, host: 'h', pid: 123,
//            links: [{src: 'test.foo', dst: 'test.foo'}], applied: {i: 3, u: 1, d: 1},
//            missed: 0, refused: 0, error: {message: '...', at: Date},
//            warnings: [{command: 'renameCollection', ns: 'test.foo', message: '...', at: Date}]}
//
// The heartbeat is the destination server's clock at the write (`$$NOW`), so `status`, which
// compares it with that server's clock too, needs no clocks in step.

import type { LoopState } from '../replicate/source-loop.ts';

/** What one loop of a run last recorded about itself. */
export interface LoopStatusRecord {
  state: LoopState;
  /** When the run last wrote this record, by the destination server's clock. */
  heartbeat: Date;
  /** When the run started the loop; the counters count from then. */
  since: Date;
  /** Seconds between the run's heartbeats while the loop runs. */
  every: number;
  /** The host name and process id of the run. */
  host: string;
  pid: number;
  /** The links the run follows (it picks up links added while it runs within seconds). */
  links: Array<{ src: string; dst: string }>;
  /** Writes applied on the destination since `since`, by kind (i insert, u update, d delete). */
  applied: { i: number; u: number; d: number };
  /** Updates whose document the destination did not have. */
  missed: number;
  /** Writes the destination refused (each logged and skipped). */
  refused: number;
  /** The last error: the one the loop is retrying after, or the one it stopped on. */
  error?: { message: string; at: Date };
  /**
   * The newest changes on replicated namespaces that mmm did not replicate (DDL, time-series
   * writes), oldest first; `at` is when the source logged each. Absent in older records.
   */
  warnings?: Array<{ command: string; ns: string; message: string; at: Date }>;
}

const STATES: readonly string[] = ['running', 'retrying', 'stopped', 'failed'] satisfies readonly LoopState[];

/**
 * The record in a stored document's `status` field, or undefined if there is none or it is not
 * in the shape above. A damaged record never stops replication or `dump-config`: the status is
 * only reported, and the next run rewrites it.
 */
export function parseLoopStatus(value: unknown): LoopStatusRecord | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const v = value as Record<string, unknown>;
  const applied = v.applied as Record<string, unknown> | null | undefined;
  const error = v.error as Record<string, unknown> | null | undefined;
  const warnings = v.warnings as unknown[] | undefined;
  const ok =
    typeof v.state === 'string' &&
    STATES.includes(v.state) &&
    v.heartbeat instanceof Date &&
    v.since instanceof Date &&
    isCount(v.every) &&
    typeof v.host === 'string' &&
    isCount(v.pid) &&
    Array.isArray(v.links) &&
    v.links.every((l: unknown) => typeof l === 'object' && l !== null && typeof (l as Record<string, unknown>).src === 'string' && typeof (l as Record<string, unknown>).dst === 'string') &&
    typeof applied === 'object' &&
    applied !== null &&
    isCount(applied.i) &&
    isCount(applied.u) &&
    isCount(applied.d) &&
    isCount(v.missed) &&
    isCount(v.refused) &&
    (error === undefined || (typeof error === 'object' && error !== null && typeof error.message === 'string' && error.at instanceof Date)) &&
    (warnings === undefined || (Array.isArray(warnings) && warnings.every(isWarning)));
  if (!ok) return undefined;
  const record: LoopStatusRecord = {
    state: v.state as LoopState,
    heartbeat: v.heartbeat as Date,
    since: v.since as Date,
    every: Number(v.every),
    host: v.host as string,
    pid: Number(v.pid),
    links: (v.links as Array<{ src: string; dst: string }>).map(({ src, dst }) => ({ src, dst })),
    applied: { i: Number(applied!.i), u: Number(applied!.u), d: Number(applied!.d) },
    missed: Number(v.missed),
    refused: Number(v.refused),
  };
  if (error) record.error = { message: error.message as string, at: error.at as Date };
  if (warnings) {
    record.warnings = (warnings as NonNullable<LoopStatusRecord['warnings']>).map(({ command, ns, message, at }) => ({ command, ns, message, at }));
  }
  return record;
}

function isWarning(value: unknown): boolean {
  if (typeof value !== 'object' || value === null) return false;
  const w = value as Record<string, unknown>;
  return typeof w.command === 'string' && typeof w.ns === 'string' && typeof w.message === 'string' && w.at instanceof Date;
}

/** A non-negative number, as the server returns it (a double, or an Int32/Long if promoted). */
function isCount(value: unknown): boolean {
  return typeof value === 'number' && Number.isFinite(value) && value >= 0;
}
