import { type Server, createServer } from 'node:http';
import { Registry } from 'prom-client';

/**
 * A process's operational listener, apart from the public port: `GET /metrics` (Prometheus
 * text from `render`) and `GET /health/live` (and HEAD of each; a query string ignored), nothing
 * else. Resolves with the server once it
 * listens, or with undefined once a failure to listen (a port already in use) has been passed
 * to `warn`: serving orders and jobs matters more than their metrics. Plain Node, no Nest: the
 * API's and the worker's MetricsListener and the cluster primary (api-cluster.ts) all use it.
 */
export function serveMetrics(
  port: number,
  host: string,
  render: () => Promise<string>,
  warn: (message: string) => void,
): Promise<Server | undefined> {
  const server = createServer((req, res) => {
    // GET or HEAD (a load balancer's health check), the query ignored (Prometheus's `params:`)
    const asked = req.method === 'GET' || req.method === 'HEAD';
    const path = (req.url ?? '').split('?')[0];
    const body = (text: string) => (req.method === 'HEAD' ? undefined : text);
    if (asked && path === '/metrics') {
      render().then(
        (text) =>
          res.writeHead(200, { 'content-type': Registry.PROMETHEUS_CONTENT_TYPE }).end(body(text)),
        (err: Error) => {
          warn(`metrics not rendered: ${err.message}`);
          res.writeHead(500).end();
        },
      );
    } else if (asked && path === '/health/live') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(body('{"status":"ok"}'));
    } else {
      res.writeHead(404).end();
    }
  });
  return new Promise((resolve) => {
    server.once('listening', () => resolve(server));
    server.once('error', (err) => {
      warn(`metrics not served on port ${port}: ${err.message}`);
      resolve(undefined);
    });
    server.listen(port, host);
  });
}
