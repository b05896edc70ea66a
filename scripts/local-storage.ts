// `npm start`'s image store in development (scripts/start.sh starts it when STORAGE_ENDPOINT is
// unset and nothing answers at its default, localhost:9000): the tests' S3-compatible store
// (s3rver behind a SigV4 gate, scripts/local-storage/local-s3.ts) on the endpoint's port, with the
// development key pair, its objects kept in var/storage (LOCAL_STORAGE_DIR). Each S3 event
// notification is delivered to the API's POST /v1/webhooks/storage as MinIO's webhook target
// delivers it (`Authorization: Bearer <STORAGE_WEBHOOK_TOKEN>`), retried while the API is
// unreachable or answers 5xx; one still refused after that is left to the worker's image
// reconciliation (HeadObject within about 5 minutes). Development only: a deployment uses a real
// store (MinIO, R2, S3).
import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { loadConfig } from '../src/config/config';
import { startLocalS3 } from './local-storage/local-s3';

const DELIVERY_ATTEMPTS = 6; // 1 + 2 + 4 + 8 + 16 s between them: an API restarting under npm start

const say = (line: string) => console.log(`[storage] ${line}`);

async function main(): Promise<void> {
  const config = loadConfig(process.env);
  if (!config.isDevelopment) {
    throw new Error(
      'the local image store is for NODE_ENV=development only (a deployment names its store: STORAGE_ENDPOINT)',
    );
  }
  const { storage } = config;
  const endpoint = new URL(storage.endpoint);
  if (
    !['localhost', '127.0.0.1', '[::1]'].includes(endpoint.hostname) ||
    endpoint.protocol !== 'http:'
  ) {
    throw new Error(
      `STORAGE_ENDPOINT ${storage.endpoint} is not a local http:// address: nothing to serve here`,
    );
  }
  const directory = resolve(process.env.LOCAL_STORAGE_DIR || 'var/storage');
  mkdirSync(directory, { recursive: true });
  // the API where it listens: HOST (a development instance binds loopback unless it says), on
  // loopback when it names every address
  const host = ['0.0.0.0', '::', ''].includes(config.http.host) ? '127.0.0.1' : config.http.host;
  const webhook = `http://${host.includes(':') ? `[${host}]` : host}:${config.http.port}/v1/webhooks/storage`;

  const deliver = async (event: unknown): Promise<void> => {
    for (let attempt = 1; ; attempt++) {
      const outcome = await fetch(webhook, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${storage.webhookToken}`,
          'content-type': 'application/json',
        },
        body: JSON.stringify(event),
        signal: AbortSignal.timeout(10_000),
      }).then(
        (res) => (res.ok ? null : `${res.status}`),
        (err: Error) => err.message,
      );
      if (outcome === null) return;
      const retry = attempt < DELIVERY_ATTEMPTS && !/^4\d\d$/.test(outcome);
      if (!retry) {
        say(
          `notification not taken (${outcome}): the worker's image reconciliation will find the upload`,
        );
        return;
      }
      await sleep(1_000 * 2 ** (attempt - 1));
    }
  };

  const store = await startLocalS3({
    bucket: storage.bucket,
    port: Number(endpoint.port || 80),
    directory,
    accessKeyId: storage.accessKeyId,
    secretAccessKey: storage.secretAccessKey,
    onEvent: (event) => void deliver(event),
  });
  say(
    `S3-compatible image store on ${storage.endpoint} (bucket ${storage.bucket}, files in ${directory}); notifications to ${webhook}`,
  );
  const stop = () => {
    void store.close().then(() => process.exit(0));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

main().catch((err: Error) => {
  console.error(`[storage] ${err.message}`);
  process.exit(1);
});
