// Which failures a link retries: the driver's errors as they really come. Two shapes were missed
// before (and stopped links for good where a retry would have worked): a server error read with
// `promoteValues: false` (the oplog tailer's cursor) carries its code as an Int32, and a bulk
// write that found no server wraps the driver's error instead of being it.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Int32, MongoBulkWriteError, MongoNetworkError, MongoServerError, MongoServerSelectionError } from 'mongodb';
import { isTransient, serverErrorCode } from '../src/apply/transient.ts';

test('a server error code read without promoting values (an Int32) counts like a number', () => {
  const shutdown = new MongoServerError({ code: new Int32(11600), codeName: 'InterruptedAtShutdown', errmsg: 'Executor error during getMore :: caused by :: interrupted at shutdown' });
  assert.equal(serverErrorCode(shutdown), 11600);
  assert.equal(isTransient(shutdown), true);
  assert.equal(isTransient(new MongoServerError({ code: new Int32(43), errmsg: 'cursor id 1 not found' })), true);
  assert.equal(isTransient(new MongoServerError({ code: new Int32(11000), errmsg: 'E11000 duplicate key' })), false);
  assert.equal(serverErrorCode(new Error('no code')), undefined);
});

test('a bulk write that found no server is as transient as the error it wraps', () => {
  // What bulkWrite throws while the destination is down (driver 7: a "driver related error").
  const down = new MongoBulkWriteError(new MongoServerSelectionError('connect ECONNREFUSED 127.0.0.1:27017', {} as never), {} as never);
  assert.equal(isTransient(down), true);
  assert.equal(isTransient(new MongoBulkWriteError(new MongoNetworkError('connection 2 to 127.0.0.1:27017 closed'), {} as never)), true);
  // A write the server refused stays a refusal.
  const refused = new MongoBulkWriteError({ message: 'E11000 duplicate key', code: 11000, writeErrors: [] } as never, {} as never);
  assert.equal(isTransient(refused), false);
});
