// A TCP proxy that adds a fixed delay each way, for the bench's latency section and the tests of
// a long link: mmm talks to the destination through it as over a long link (a factory and a
// cloud). This machine's kernel has no netem, so the delay is made here: every chunk read from
// one side is written to the other `delayMs` later, in order, so a round trip costs twice the
// delay and throughput is not capped (chunks in flight are not limited, like a link's
// bandwidth-delay product). A timer fires late when the process is busy: how late is kept, so
// that a bench can say what delay it really added.

import net from 'node:net';

export class DelayProxy {
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();
  /** How late each chunk went out, in ms beyond `delayMs`, since the last lateness(). */
  private late: number[] = [];

  private constructor(
    private readonly target: { host: string; port: number },
    private readonly delayMs: number,
  ) {
    this.server = net.createServer((client) => this.connect(client));
  }

  /** Listens on 127.0.0.1, on a port of its own; `port` says which. */
  static async start(target: { host: string; port: number }, delayMs: number): Promise<DelayProxy> {
    const proxy = new DelayProxy(target, delayMs);
    await new Promise<void>((resolve) => proxy.server.listen(0, '127.0.0.1', resolve));
    return proxy;
  }

  get port(): number {
    return (this.server.address() as net.AddressInfo).port;
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** How late chunks went out since the last call (ms beyond the delay): median and 99th percentile. */
  lateness(): { chunks: number; p50: number; p99: number } {
    const late = this.late.sort((a, b) => a - b);
    this.late = [];
    const at = (q: number) => late[Math.floor(q * (late.length - 1))] ?? 0;
    return { chunks: late.length, p50: at(0.5), p99: at(0.99) };
  }

  private connect(client: net.Socket): void {
    const upstream = net.connect(this.target.port, this.target.host);
    for (const s of [client, upstream]) {
      s.setNoDelay(true);
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
      s.on('error', () => undefined);
    }
    this.pipe(client, upstream);
    this.pipe(upstream, client);
  }

  /** Copies `from` to `to`, each chunk `delayMs` after it arrived; ends and errors go across too. */
  private pipe(from: net.Socket, to: net.Socket): void {
    from.on('data', (chunk: Buffer) => {
      const at = performance.now();
      setTimeout(() => {
        this.late.push(performance.now() - at - this.delayMs);
        if (!to.destroyed) to.write(chunk);
      }, this.delayMs);
    });
    from.on('close', () => setTimeout(() => to.destroy(), this.delayMs));
  }
}
