import type { AddressInfo } from 'node:net';
import { serveMetrics } from './metrics-http';

describe('serveMetrics', () => {
  it('answers GET and HEAD of /metrics and /health/live, whatever the query string; nothing else', async () => {
    const warnings: string[] = [];
    const server = await serveMetrics(
      0,
      '127.0.0.1',
      async () => 'up 1\n',
      (m) => warnings.push(m),
    );
    if (!server) throw new Error(`not listening: ${warnings.join('; ')}`);
    try {
      const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const ask = async (method: string, path: string) => {
        const res = await fetch(`${base}${path}`, { method });
        return [res.status, await res.text()];
      };
      expect(await ask('GET', '/metrics')).toEqual([200, 'up 1\n']);
      // Prometheus jobs with `params:` add a query string; a HEAD health check reads the status
      expect(await ask('GET', '/metrics?format=text')).toEqual([200, 'up 1\n']);
      expect(await ask('HEAD', '/metrics')).toEqual([200, '']);
      expect(await ask('GET', '/health/live?probe=lb')).toEqual([200, '{"status":"ok"}']);
      expect(await ask('HEAD', '/health/live')).toEqual([200, '']);
      expect((await ask('POST', '/metrics'))[0]).toBe(404);
      expect((await ask('GET', '/metricsx'))[0]).toBe(404);
      expect((await ask('GET', '/'))[0]).toBe(404);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
