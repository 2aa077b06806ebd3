// A replica set with access control, for the tests of privileges and credentials.
import { chmodSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { MongoClient } from 'mongodb';
import { startReplicaSet, type ReplicaSet } from '../../scripts/replica-sets.ts';

/**
 * A one-member replica set started with `--auth`, and its first user (`roles`, root by default)
 * created through the localhost exception: with no user yet, a connection from 127.0.0.1 may
 * create one. Its members authenticate to each other with a key file, written into `dir`
 * (mongod wants it readable by its owner only).
 */
export async function startSecuredSet(dir: string, first: { user: string; pwd: string; roles?: string[] }): Promise<ReplicaSet> {
  const keyFile = path.join(dir, 'keyfile');
  writeFileSync(keyFile, Buffer.from('mmm test key file, base64 characters only').toString('base64'));
  chmodSync(keyFile, 0o600);
  const set = await startReplicaSet(1, { args: ['--auth', '--keyFile', keyFile] });
  const direct = new MongoClient(`mongodb://${set.members[0]!.host}/?directConnection=true`);
  try {
    await direct.db('admin').command({ createUser: first.user, pwd: first.pwd, roles: first.roles ?? ['root'] });
  } finally {
    await direct.close();
  }
  return set;
}
