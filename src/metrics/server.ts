// Serves a registry's metrics at /metrics over HTTP, for Prometheus to scrape.

import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { MmmError } from '../errors.ts';

export interface MetricsServerOptions {
  /** Address to listen on; 127.0.0.1 keeps the metrics on this machine. */
  host: string;
  /** Port; 0 lets the system choose a free one (see `url`). */
  port: number;
}

export const METRICS_SERVER_DEFAULTS = { host: '127.0.0.1' } as const;

export interface MetricsServer {
  /** Where the metrics are, with the port actually bound. */
  url: string;
  close(): Promise<void>;
}

/** Listens, or throws MmmError (port in use, address not on this machine). */
export async function serveMetrics(registry: Registry, options: MetricsServerOptions): Promise<MetricsServer> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' || path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('mmm serves its metrics at /metrics\n');
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
      (err: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${err.message}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(new MmmError(`cannot serve metrics on ${options.host}:${options.port}: ${err.code ?? err.message}`, { cause: err })),
    );
    server.listen(options.port, options.host, () => resolve());
  });
  const { address, port } = server.address() as AddressInfo;
  const host = address.includes(':') ? `[${address}]` : address;
  return {
    url: `http://${host}:${port}/metrics`,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
