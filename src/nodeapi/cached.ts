/**
 * One computation at a time, its result kept for `ttlMs`: monitors hammer the check
 * endpoints, and every caller in that window shares one run (and one set of sockets).
 */
export class CachedTask<T> {
  private value: { result: T; at: number } | undefined;
  private running: Promise<T> | undefined;

  constructor(private readonly compute: () => Promise<T>, private readonly ttlMs: number) {}

  get(): Promise<T> {
    if (this.value && Date.now() - this.value.at < this.ttlMs) return Promise.resolve(this.value.result);
    this.running ??= this.compute().then((result) => {
      this.value = { result, at: Date.now() };
      return result;
    }).finally(() => {
      this.running = undefined;
    });
    return this.running;
  }
}
