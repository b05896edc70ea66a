import Ajv from 'ajv';
import addFormats from 'ajv-formats';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { insertProduct, newKey } from '../support/fixtures';
import { buyers, placeOrder } from '../support/orders';
import { TestApp, bootTestApp } from '../support/test-app';

/**
 * Real answers checked against the committed openapi.json's schemas by a validator, as a client
 * that validates responses does (OpenAPI 3.0's `nullable`: Ajv's keyword). `nullable: true` beside
 * an enum that does not list null, or beside an allOf/$ref, lets no null through: every new order's
 * first history entry (`from: null`) and its `payment: null` failed such a client.
 */
describe('answers conform to the OpenAPI document (a validating client)', () => {
  let t: TestApp;
  const document = JSON.parse(
    readFileSync(join(__dirname, '..', '..', 'openapi.json'), 'utf8'),
  ) as object;
  const ajv = new Ajv({ strict: false, allErrors: true });
  // the document's formats checked too (uuid, date-time, email…), as a validating client checks
  // them: without them Ajv ignored every `format` (with a warning each)
  addFormats(ajv);
  ajv.addSchema(document, 'openapi.json');
  const conforms = (schema: string, value: unknown) => {
    const validate = ajv.compile({ $ref: `openapi.json#/components/schemas/${schema}` });
    return validate(value)
      ? []
      : (validate.errors ?? []).map((e) => `${e.instancePath} ${e.message}`);
  };

  beforeAll(async () => {
    t = await bootTestApp();
  });
  afterAll(async () => {
    await t?.close();
  });

  it('an order as placed, as read before its payment, and as read once its payment started', async () => {
    const productId = await insertProduct(t.db.pool, { stock: 5 });
    const [buyer] = await buyers(t.http, 1);
    const placed = await placeOrder(t.http, buyer, [{ productId, quantity: 1 }]);
    expect(placed.status).toBe(201);
    expect(conforms('OrderDto', placed.body)).toEqual([]);
    const unpaid = await t.http.get(`/v1/orders/${placed.body.id}`, { token: buyer.token });
    expect([unpaid.body.payment, unpaid.body.history[0].from]).toEqual([null, null]);
    expect(conforms('OrderDetailDto', unpaid.body)).toEqual([]);
    const pay = await t.http.post(
      `/v1/orders/${placed.body.id}/payment`,
      {},
      { token: buyer.token, idempotencyKey: newKey() },
    );
    expect(pay.status).toBe(201);
    expect(conforms('PaymentIntentDto', pay.body)).toEqual([]);
    const paying = await t.http.get(`/v1/orders/${placed.body.id}`, { token: buyer.token });
    expect(paying.body.payment).not.toBeNull();
    expect(conforms('OrderDetailDto', paying.body)).toEqual([]);
    const list = await t.http.get('/v1/orders', { token: buyer.token });
    expect(conforms('OrderDto', list.body.items[0])).toEqual([]);
  });
});
