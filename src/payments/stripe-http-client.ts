import { Agent as HttpAgent, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import Stripe from 'stripe';

/** The error a response whose body was cut off rejects with (the SDK's `raw.exception`). */
export class ResponseBodyCut extends Error {
  constructor() {
    super('the connection closed before the response body was complete');
    this.name = 'ResponseBodyCut';
  }
}

/**
 * The SDK's Node HTTP client, with the connect held to a timeout and a body cut off failing. The SDK's
 * `timeout` is the socket's, set once it has connected: a host that never completes the TCP
 * handshake (SYNs dropped: an egress firewall, a route gone) was waited for until the OS gave up
 * (~2 min an attempt, three attempts), so here the sockets are made with `connectTimeoutMs` (the
 * agent's `timeout`, set before the connect begins; keep-alive sockets idle that long are closed).
 * And a response body that closes incomplete fails the call. The SDK reads a body listening for
 * its 'data' and 'end' only: a body that stopped after the headers (a path cut without a reset, a
 * proxy that hangs mid-answer) was read for ever — its timeout (the socket's silence, which goes
 * on through the body) destroys the socket, and neither 'end' nor an error ever reaches the reader
 * (its request promise resolved at the headers, so its retries never apply). A call no one set a
 * deadline for (the worker's) held its job, its pass's lock and an order's place in the gateway's
 * queue for the life of the process. Here the reader is raced with the body's close: the SDK
 * answers a StripeAPIError carrying ResponseBodyCut, an unavailable gateway for the caller, whose
 * retry (under the same idempotency key) meets the outcome. (A body still arriving is never cut:
 * only its silence, as before.)
 */
export function boundedStripeHttpClient(
  protocol: 'http' | 'https',
  connectTimeoutMs: number,
): Stripe.HttpClient {
  const options = { keepAlive: true, timeout: connectTimeoutMs };
  const client = Stripe.createNodeHttpClient(
    protocol === 'http' ? new HttpAgent(options) : new HttpsAgent(options),
  );
  const makeRequest = client.makeRequest.bind(client);
  client.makeRequest = async (...args: Parameters<typeof makeRequest>) => {
    const response = await makeRequest(...args);
    const raw = response.getRawResponse();
    const toJSON = response.toJSON.bind(response);
    response.toJSON = () => Promise.race([toJSON(), cutOff(raw)]);
    return response;
  };
  return client;
}

/** Rejects once `raw` has closed without its whole body; never settles otherwise. */
function cutOff(raw: IncomingMessage): Promise<never> {
  return new Promise<never>((_, reject) => {
    const closed = () => {
      if (!raw.complete) reject(new ResponseBodyCut());
    };
    if (raw.destroyed) closed();
    else raw.once('close', closed);
  });
}
