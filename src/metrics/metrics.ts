// Prometheus metrics of a run (prom-client), one registry per run. Counters and gauges are per
// loop, labelled with its destination and source server names: a loop's links share them, as
// mmm applies a source's oplog for all of them at once. Also the process's defaults (CPU,
// memory, event loop lag, ...), as prom-client collects them.

import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { BatchReport, LoopObserver, LoopState } from '../replicate/source-loop.ts';
import type { LoopProgress } from '../status/progress.ts';

type LoopLabels = { destination: string; source: string };

const LOOP_LABELS = ['destination', 'source'] as const;
const STATES: readonly LoopState[] = ['running', 'retrying', 'stopped', 'failed'];

export class ReplicationMetrics {
  readonly registry = new Registry();
  private readonly loops: Array<{ labels: LoopLabels; progress: LoopProgress }> = [];

  private readonly applied = new Counter({
    name: 'mmm_operations_applied_total',
    help: 'Writes applied on the destination, by kind: i insert, u update, d delete',
    labelNames: [...LOOP_LABELS, 'op'],
    registers: [this.registry],
  });
  private readonly missed = new Counter({
    name: 'mmm_updates_missed_total',
    help: 'Updates whose document the destination did not have',
    labelNames: LOOP_LABELS,
    registers: [this.registry],
  });
  private readonly conflicts = new Counter({
    name: 'mmm_conflicts_total',
    help: 'Versions on the destination that a concurrent write from the source overwrote, each kept in its mmm.conflicts',
    labelNames: LOOP_LABELS,
    registers: [this.registry],
  });
  private readonly lost = new Counter({
    name: 'mmm_writes_lost_total',
    help: "Writes from the source not applied: a concurrent version of the destination's won over them (their origin keeps the conflict)",
    labelNames: LOOP_LABELS,
    registers: [this.registry],
  });
  private readonly entries = new Counter({
    name: 'mmm_oplog_entries_read_total',
    help: 'Source oplog entries read, replicated or not',
    labelNames: LOOP_LABELS,
    registers: [this.registry],
  });
  private readonly batchEntries = new Histogram({
    name: 'mmm_batch_entries',
    help: 'Oplog entries per batch read and applied (its count is the number of batches)',
    labelNames: LOOP_LABELS,
    buckets: [1, 2, 5, 10, 50, 100, 500, 1000, 5000],
    registers: [this.registry],
  });
  private readonly errors = new Counter({
    name: 'mmm_errors_total',
    help: 'Errors: transient (the loop retries), fatal (the loop stopped), refused_write (one write refused, kept in mmm.refused)',
    labelNames: [...LOOP_LABELS, 'kind'],
    registers: [this.registry],
  });
  private readonly refusedKept = new Gauge({
    name: 'mmm_refused_writes_kept',
    help: 'Writes from the source that the destination refused, kept in its mmm.refused (across runs, until removed there)',
    labelNames: LOOP_LABELS,
    registers: [this.registry],
  });
  private readonly retries = new Counter({
    name: 'mmm_retries_total',
    help: 'Times a loop lost a server and waited to retry',
    labelNames: LOOP_LABELS,
    registers: [this.registry],
  });
  private readonly state = new Gauge({
    name: 'mmm_loop_state',
    help: 'The state of each loop: 1 for the one it is in (running, retrying, stopped, failed), 0 for the others',
    labelNames: [...LOOP_LABELS, 'state'],
    registers: [this.registry],
  });
  private readonly checkpoint = new Gauge({
    name: 'mmm_checkpoint_timestamp_seconds',
    help: 'The seconds part of the checkpoint: the source oplog time applied up to',
    labelNames: LOOP_LABELS,
    registers: [this.registry],
  });

  constructor() {
    const loops = this.loops;
    new Gauge({
      name: 'mmm_lag_seconds',
      help: 'How far each loop is behind its source: 0 when caught up, else the age of the newest entry applied',
      labelNames: LOOP_LABELS,
      registers: [this.registry],
      collect() {
        for (const { labels, progress } of loops) {
          const lag = progress.lagSeconds();
          if (lag !== undefined) this.set(labels, lag);
        }
      },
    });
    collectDefaultMetrics({ register: this.registry });
  }

  /** The observer that counts for one loop; `progress` must see each event first (for lag). */
  observer(loop: { destination: string; source: string }, progress: LoopProgress): LoopObserver {
    const labels: LoopLabels = { destination: loop.destination, source: loop.source };
    // A loop restarted to follow new links comes back with the same labels: one entry each.
    const known = this.loops.findIndex((l) => l.labels.destination === labels.destination && l.labels.source === labels.source);
    if (known >= 0) this.loops.splice(known, 1);
    this.loops.push({ labels, progress });
    // Every series of the loop exists from the start, at 0, so a rate() has a first sample.
    for (const op of ['i', 'u', 'd']) this.applied.inc({ ...labels, op }, 0);
    this.missed.inc(labels, 0);
    this.conflicts.inc(labels, 0);
    this.lost.inc(labels, 0);
    this.entries.inc(labels, 0);
    this.batchEntries.zero(labels);
    for (const kind of ['transient', 'fatal', 'refused_write']) this.errors.inc({ ...labels, kind }, 0);
    this.retries.inc(labels, 0);
    return {
      state: (state, error) => {
        for (const s of STATES) this.state.set({ ...labels, state: s }, s === state ? 1 : 0);
        if (state === 'retrying') {
          this.retries.inc(labels);
          if (error) this.errors.inc({ ...labels, kind: 'transient' });
        }
        if (state === 'failed') this.errors.inc({ ...labels, kind: 'fatal' });
      },
      batch: (report: BatchReport) => {
        const { stats } = report;
        this.applied.inc({ ...labels, op: 'i' }, stats.inserted);
        this.applied.inc({ ...labels, op: 'u' }, stats.updated);
        this.applied.inc({ ...labels, op: 'd' }, stats.deleted);
        this.missed.inc(labels, stats.missed);
        this.conflicts.inc(labels, stats.conflicts);
        this.lost.inc(labels, stats.lost);
        this.errors.inc({ ...labels, kind: 'refused_write' }, stats.failed);
        this.entries.inc(labels, report.entries);
        this.batchEntries.observe(labels, report.entries);
        this.checkpoint.set(labels, report.checkpoint.t);
      },
      refusedKept: (kept: number) => this.refusedKept.set(labels, kept),
    };
  }
}
