import type { IncomingMessage, ServerResponse } from 'node:http';
import { AddressInfo, Server, Socket, connect, createServer } from 'node:net';
import { EventEmitter } from 'node:events';
import { endWaitingTunnels, refuseConnect } from './request-limits';

/**
 * Node hands a CONNECT's connection over without its timeout or parser: waiting for the answers
 * due before it (refused after them, in request order), it was reached by neither the socket
 * timeout nor the shutdown's cut — a client that never read a large answer ahead of it held the
 * connection, and the shutdown, for ever (review).
 */
describe('refuseConnect behind an answer that does not come', () => {
  let server: Server;
  let accepted: Promise<Socket>;

  beforeEach(async () => {
    let take!: (s: Socket) => void;
    accepted = new Promise((resolve) => (take = resolve));
    server = createServer((s) => take(s));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  });
  afterEach(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  /** The server's side of a connection whose earlier answer (`_httpMessage`) never closes. */
  const waitingConnection = async () => {
    const client = connect((server.address() as AddressInfo).port, '127.0.0.1');
    client.on('error', () => undefined);
    const socket = await accepted;
    const due = Object.assign(new EventEmitter(), { req: {} }) as unknown as ServerResponse;
    Object.assign(socket, { _httpMessage: due });
    const request = { url: 'example.com:443', headers: {} } as IncomingMessage;
    const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
    return { client, socket, request, closed };
  };

  it('is ended after its bound', async () => {
    const { client, socket, request, closed } = await waitingConnection();
    refuseConnect(() => [], 200)(request, socket);
    await closed; // (without the bound: never — the jest timeout)
    client.destroy();
  });

  it("is ended by the shutdown's cut", async () => {
    const { client, socket, request, closed } = await waitingConnection();
    refuseConnect(() => [], 3_600_000)(request, socket);
    endWaitingTunnels();
    await closed;
    client.destroy();
  });
});
