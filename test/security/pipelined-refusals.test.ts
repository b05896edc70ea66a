import { connect } from 'node:net';
import { Logger } from '@nestjs/common';
import { createAdmin } from '../support/auth';
import { createProduct } from '../support/catalog';
import { newKey } from '../support/fixtures';
import { Buyer, buyers } from '../support/orders';
import { TestApp, bootTestApp } from '../support/test-app';
import { waitFor } from '../support/wait-for';

/** An app, its port, an admin, a customer and a product of 10 units. */
async function shop(env?: Record<string, string>) {
  const t = await bootTestApp({ env });
  const admin = (await createAdmin(t)).accessToken;
  const [alice] = await buyers(t.http, 1);
  const productId = (await createProduct(t, admin, { stock: 10 })).id;
  return { t, port: Number(new URL(t.baseUrl).port), admin, alice, productId };
}

/**
 * A request Node refuses before it is one (a head over 16 KB → 431, an unparsable line → 400),
 * pipelined on a keep-alive connection behind a write still being handled: its refusal was
 * written at once — where the write's answer was due — and the connection closed. The write had
 * committed; its client read "431, nothing done", and sending it again without a key did it twice
 * (adversarial review of the HTTP edge). Answers now go out in request order (RFC 9112 §9.3.2).
 */
describe('a refusal pipelined behind a write', () => {
  let t: TestApp;
  let port: number;
  let admin: string;
  let alice: Buyer;
  let productId: string;

  beforeAll(async () => {
    ({ t, port, admin, alice, productId } = await shop());
  });
  afterAll(async () => {
    await t?.close();
  });

  /** Sends `text` as is on one connection; everything read until the server closes it. */
  const send = (text: string): Promise<string> =>
    new Promise((resolve, reject) => {
      const socket = connect(port, '127.0.0.1', () => socket.write(text));
      const chunks: Buffer[] = [];
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`connection left open; read: ${Buffer.concat(chunks).toString()}`));
      }, 10_000);
      socket.on('data', (c: Buffer) => chunks.push(c));
      socket.on('error', () => undefined);
      socket.on('close', () => {
        clearTimeout(timer);
        resolve(Buffer.concat(chunks).toString('utf8'));
      });
    });
  const statuses = (wire: string) =>
    [...wire.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));
  const onHand = async () =>
    (
      await t.db.pool.query<{ on_hand: number }>(
        'SELECT on_hand FROM inventory_items WHERE product_id = $1',
        [productId],
      )
    ).rows[0].on_hand;

  const restock = (extra = '') => {
    const body = JSON.stringify({ delta: 5, reason: 'restock' });
    return (
      `POST /v1/admin/products/${productId}/stock-adjustments HTTP/1.1\r\nHost: 127.0.0.1\r\n` +
      `Authorization: Bearer ${admin}\r\nContent-Type: application/json\r\n${extra}` +
      `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`
    );
  };
  const cartLine = (quantity: number) => {
    const body = JSON.stringify({ quantity });
    return (
      `PUT /v1/cart/items/${productId} HTTP/1.1\r\nHost: 127.0.0.1\r\n` +
      `Authorization: Bearer ${alice.token}\r\nContent-Type: application/json\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`
    );
  };
  const headTooLarge = `GET /v1/categories HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: ${'c'.repeat(17_000)}\r\n\r\n`;

  it('a restock is answered as done, then the head too large behind it 431: the stock moved once', async () => {
    const before = await onHand();
    const wire = await send(restock() + headTooLarge);
    expect(statuses(wire)).toEqual([200, 431]);
    expect(wire).toContain(`{"onHand":${before + 5},"reserved":0,"available":${before + 5}}`);
    expect(wire).toMatch(/HEADERS_TOO_LARGE/);
    expect(await onHand()).toBe(before + 5);
  });

  it('a keyed one too, and an unparsable line behind a cart change: each write answered before the 400', async () => {
    const before = await onHand();
    const keyed = await send(restock(`Idempotency-Key: ${newKey()}\r\n`) + 'BLAH\r\n\r\n');
    expect(statuses(keyed)).toEqual([200, 400]);
    expect(await onHand()).toBe(before + 5);

    const cart = await send(cartLine(4) + 'get /v1/categories HTTP/1.1\r\nHost: x\r\n\r\n');
    expect(statuses(cart)).toEqual([200, 400]);
    expect(cart).toMatch(/"quantity":4/);
  });

  it('two writes and then the refusal: every answer in the order of its request', async () => {
    const before = await onHand();
    const wire = await send(restock() + cartLine(2) + restock() + headTooLarge);
    expect(statuses(wire)).toEqual([200, 200, 200, 431]);
    expect(await onHand()).toBe(before + 10);
  });

  it('a CONNECT behind a restock still waiting on its row: the restock answered first, then the 405', async () => {
    const before = await onHand();
    const holder = await t.db.pool.connect();
    let wire: Promise<string>;
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT 1 FROM inventory_items WHERE product_id = $1 FOR UPDATE', [
        productId,
      ]);
      wire = send(restock() + 'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n');
      // the restock's statement waits on the row held here: it is under way
      await waitFor('the restock waiting on its row', async () => {
        const waiting = await t.db.pool.query(
          `SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()`,
        );
        return waiting.rows[0].n > 0;
      });
    } finally {
      await holder.query('COMMIT').catch(() => undefined);
      holder.release();
    }
    const answered = await wire;
    expect(statuses(answered)).toEqual([200, 405]);
    expect(await onHand()).toBe(before + 5);
  });

  it('behind a request that asked to close the connection, nothing else is written', async () => {
    const before = await onHand();
    const wire = await send(restock('Connection: close\r\n') + 'BLAH\r\n\r\n');
    expect(statuses(wire)).toEqual([200]);
    expect(await onHand()).toBe(before + 5);
  });

  it('a refusal with nothing before it is written at once, as it was', async () => {
    const wire = await send(headTooLarge);
    expect(statuses(wire)).toEqual([431]);
    expect(wire).toMatch(/application\/problem\+json/);
  });
});

/**
 * A 408 (a request too slow to arrive) is no parse error: Node's parser goes on reading. Refused
 * behind a write still being handled, the rest of the slow request then came in, and was run and
 * answered 200 (a cart change committed), the 408 written after it (adversarial review).
 */
describe('a request refused for its slowness behind a write still being handled', () => {
  let t: TestApp;
  let port: number;
  let admin: string;
  let alice: Buyer;
  let productId: string;

  beforeAll(async () => {
    ({ t, port, admin, alice, productId } = await shop({
      HTTP_HEADERS_TIMEOUT_MS: '1000',
      HTTP_REQUEST_TIMEOUT_MS: '2000',
    }));
  });
  afterAll(async () => {
    await t?.close();
  });

  it.each([
    // its head too slow: read, once it came, as a request after the refusal
    ['its head', 0],
    // its head read (its request hooks run), its body too slow: the request the refusal is about
    ['its body', 1],
  ])(
    'is never run, even once all of it came (%s too slow): the write before it answered, then the 408',
    async (_part, headWhole) => {
      const restockBody = JSON.stringify({ delta: 5, reason: 'restock' });
      const cartBody = JSON.stringify({ quantity: 7 });
      const cartChange =
        `PUT /v1/cart/items/${productId} HTTP/1.1\r\nHost: 127.0.0.1\r\n` +
        `Authorization: Bearer ${alice.token}\r\nContent-Type: application/json\r\n` +
        `Content-Length: ${Buffer.byteLength(cartBody)}\r\n\r\n${cartBody}`;
      // where the cart change stops until its 408 is decided: in its head, or three bytes into its body
      const cutAt = headWhole
        ? cartChange.length - cartBody.length + 3
        : cartChange.indexOf('Authorization');
      // the restock's handler waits on its inventory row, held here
      const held = jest.spyOn(Logger.prototype, 'warn');
      const holder = await t.db.pool.connect();
      const timedOut = new Promise<void>((resolve) =>
        t.app.getHttpServer().on('clientError', (err: NodeJS.ErrnoException) => {
          if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') resolve();
        }),
      );
      let wire: Promise<string>;
      try {
        await holder.query('BEGIN');
        await holder.query('SELECT 1 FROM inventory_items WHERE product_id = $1 FOR UPDATE', [
          productId,
        ]);
        const socket = connect(port, '127.0.0.1');
        const chunks: Buffer[] = [];
        socket.on('data', (c: Buffer) => chunks.push(c));
        socket.on('error', () => undefined);
        wire = new Promise((resolve) =>
          socket.on('close', () => resolve(Buffer.concat(chunks).toString('utf8'))),
        );
        await new Promise((resolve) => socket.once('connect', resolve));
        socket.write(
          `POST /v1/admin/products/${productId}/stock-adjustments HTTP/1.1\r\nHost: 127.0.0.1\r\n` +
            `Authorization: Bearer ${admin}\r\nContent-Type: application/json\r\n` +
            `Content-Length: ${Buffer.byteLength(restockBody)}\r\n\r\n${restockBody}` +
            cartChange.slice(0, cutAt),
        );
        await timedOut; // the cart change's head did not come in time: its 408 decided
        // (with its head too slow, three more behind it: held too, said once for the connection)
        socket.write(
          cartChange.slice(cutAt) +
            (headWhole ? '' : 'GET /v1/categories HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n'.repeat(3)),
        );
        // all of it came: held, never run (said at warn), before the restock is let through
        await waitFor('the cart change held', () =>
          held.mock.calls.some(([m]) => /^PUT request .* held, never run/.test(String(m))),
        );
      } finally {
        await holder.query('COMMIT').catch(() => undefined);
        holder.release();
      }
      const answered = await wire;
      const said = held.mock.calls.filter(([m]) => /held, never run/.test(String(m)));
      held.mockRestore();
      expect(said).toHaveLength(1);
      expect([...answered.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]))).toEqual([
        200, 408,
      ]);
      expect(answered).toMatch(/REQUEST_TIMEOUT/);
      const cart = await t.db.pool.query(
        `SELECT quantity FROM cart_items WHERE product_id = $1 AND user_id = $2`,
        [productId, alice.userId],
      );
      expect(cart.rows).toEqual([]);
    },
    30_000,
  );
});
