// Shared fixtures for routing tests.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import type { TxtLookup } from '../../src/routing/index.js';

/** A realistic program hash: sha256 of a seed, 64 lowercase hex. */
export function hashOf(seed: string): string {
  return createHash('sha256').update(seed).digest('hex');
}

type ErrorClass = abstract new (...args: never[]) => Error;

/** Asserts the promise rejects with exactly this class and message. */
export async function rejectsWith(promise: Promise<unknown>, cls: ErrorClass, message: string): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof cls, `expected ${cls.name}, got ${String(err)}`);
    assert.equal(err.message, message);
    return true;
  });
}

/** In-memory TxtLookup that records which hosts were asked. */
export class FakeTxt implements TxtLookup {
  readonly asked: string[] = [];
  constructor(private readonly records: Record<string, string | Error>) {}
  async lookup(host: string): Promise<string | undefined> {
    this.asked.push(host);
    const value = this.records[host];
    if (value instanceof Error) throw value;
    return value;
  }
}
