// Transactions that mmm left open. Every batch is applied in a transaction (writer.ts); if the
// process dies in the middle of one (a crash, SIGKILL, the machine going down), or loses its
// connection there, the server keeps the transaction open, and the documents it wrote locked,
// until its lifetime runs out (`transactionLifetimeLimitSeconds`, 60 s by default): a replay
// of the same writes would wait behind it for a minute or more.
//
// The server shows such a transaction in `$currentOp` as an idle session in a transaction whose
// last connection is gone. Those with mmm's application name are mmm's own, and no live
// process can still use them, so killing their sessions (which aborts the transaction) loses
// nothing: the writes they held were never committed, and the new run replays them. A live
// mmm's transactions keep their connection open while they run, and are left alone.

import type { Document, MongoClient } from 'mongodb';
import { APP_NAME_PREFIX } from '../connect-settings.ts';

/** Aborts the transactions that mmm left open on this server, with no connection left; returns how many. */
export async function abortAbandonedTransactions(client: MongoClient): Promise<number> {
  const admin = client.db('admin');
  // Without allUsers, the current user's operations only: mmm's own, and no extra privilege.
  const ops = await admin.aggregate<Document>([{ $currentOp: { idleConnections: true, idleSessions: true } }]).toArray();
  const connections = new Set(ops.filter((op) => op.type === 'op' && op.connectionId !== undefined).map((op) => String(op.connectionId)));
  const abandoned = ops.filter(
    (op) =>
      op.type === 'idleSession' &&
      isMmm(op.appName) &&
      op.transaction !== undefined &&
      op.lsid?.id !== undefined &&
      op.connectionId !== undefined &&
      !connections.has(String(op.connectionId)),
  );
  if (abandoned.length > 0) await admin.command({ killSessions: abandoned.map((op) => ({ id: op.lsid.id })) });
  return abandoned.length;
}

function isMmm(appName: unknown): boolean {
  return typeof appName === 'string' && (appName.startsWith(APP_NAME_PREFIX) || appName === APP_NAME_PREFIX.trim());
}
