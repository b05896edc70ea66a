/**
 * Text one person types and another is shown (or mailed): addresses, names, reviews.
 *
 * - An address with a quoted local part, a backslash or white space (`"\victim"@x`, `" victim"@x`)
 *   is delivered to `victim@x` by mail software: each was another account — and another inbox to
 *   the per-inbox allowances (cancellation emails) — for one mailbox. Refused (400).
 * - A name must show a letter or digit and hold no hidden format characters (a Hangul filler
 *   alone; `Admin` + U+200B beside `Admin`); ZWNJ and ZWJ (Persian, Indic names, emoji), subdivision
 *   flags and the Mongolian vowel separator stay; LRM/RLM/ALM, which right-to-left keyboards
 *   insert, are dropped.
 * - A review's comment must not carry text-direction controls (`\u202Emoc.elpmaxe-live//:sptth`
 *   shows as a link to another site); an author name stored before names were checked is shown on
 *   one line, and a comment stored before without the controls.
 */
import { randomUUID } from 'node:crypto';
import { inboxKey } from '../../src/common/email';
import { TEST_PASSWORD, createAdmin, registerCustomer } from '../support/auth';
import { createProduct } from '../support/catalog';
import { expectProblem } from '../support/http';
import { placeOrder } from '../support/orders';
import { TestApp, bootTestApp } from '../support/test-app';
import { repairOrders } from '../support/order-status';

describe('look-alike input: addresses, names, review text', () => {
  let t: TestApp;

  beforeAll(async () => {
    t = await bootTestApp();
  });
  afterAll(() => t?.close());

  const register = (email: string, name = 'Test Customer') =>
    t.http.post('/v1/auth/register', { email, password: TEST_PASSWORD, name });

  it('refuses addresses that mail software delivers to another one (quoted, escaped, spaced local parts)', async () => {
    const victim = `v${randomUUID().slice(0, 8)}`;
    for (const email of [
      `"\\\\${victim}"@gmail.com`,
      `"${victim}"@gmail.com`,
      `" ${victim}"@gmail.com`,
      `"${victim} "@gmail.com`,
      `"v\\\\${victim}"@gmail.com`,
    ]) {
      const res = await register(email);
      expect({ email, status: res.status }).toEqual({ email, status: 400 });
      expectProblem(res, 400, 'VALIDATION_FAILED');
    }
    expect((await register(`${victim}@gmail.com`)).status).toBe(201);
    // and rows stored before the check count as the inbox they reach
    expect(inboxKey(`"\\${victim}"@gmail.com`)).toBe(`${victim}@gmail.com`);
    expect(inboxKey(`" ${victim}"@gmail.com`)).toBe(`${victim}@gmail.com`);
  });

  it('refuses addresses that show as another one (invisible characters) or spell its domain another way (xn--, other IDNA full stops)', async () => {
    const victim = `v${randomUUID().slice(0, 8)}`;
    expect((await register(`${victim}@b\u00fccher.de`)).status).toBe(201);
    for (const email of [
      `${victim}\u200B@b\u00fccher.de`,
      `${victim.slice(0, 3)}\u00AD${victim.slice(3)}@b\u00fccher.de`,
      `${victim}\u2060@b\u00fccher.de`,
      `${victim}\u202E@b\u00fccher.de`,
      `${victim}\u034F@b\u00fccher.de`,
      `${victim}@b\u00fccher.de\u200B`,
      `${victim}@xn--bcher-kva.de`, // the same mailbox: mail software sends the Unicode form as this
      `${victim}@mail.XN--bcher-kva.de`,
      // IDNA's other full stops: the same mailbox as mail.b\u00fccher.de (with a dot of its own
      // too, or the address is no address at all)
      `${victim}@mail\u3002b\u00fccher.de`,
      `${victim}@mail\uFF0Eb\u00fccher.de`,
      `${victim}@mail\uFF61b\u00fccher.de`,
      // and letters IDNA maps to others (UTS #46): mail software sends these as fish / example / iv
      `${victim}@\uFB01sh.b\u00fccher.de`,
      `${victim}@\u24D4xample.b\u00fccher.de`,
      `${victim}@\u2173.b\u00fccher.de`,
    ]) {
      const res = await register(email);
      expect({ email, status: res.status }).toEqual({ email, status: 400 });
      expectProblem(res, 400, 'VALIDATION_FAILED');
    }
    // domains in their own letters, whatever their case, are taken (Cherokee's lower case is the
    // one IDNA maps to capitals; Greek and Turkish capitals; a dotless i)
    for (const email of [
      `${victim}@\u13E3\u13B3\u13A9.example`,
      `${victim}@\u039A\u0391\u039B\u0397.gr`,
      `${victim}@\u0130stanbul.example`,
      `${victim}@stra\u00DFe.example`,
    ]) {
      const res = await register(email);
      expect({ email, status: res.status }).toEqual({ email, status: 201 });
    }
    // and a row stored before the check counts as the inbox it reaches
    expect(inboxKey(`${victim}@xn--bcher-kva.de`)).toBe(`${victim}@b\u00fccher.de`);
  });

  it('refuses names that show nothing or hide characters, and keeps the joiners real names need', async () => {
    // (and invisible ASCII riding on tag characters, or a Mongolian separator among Latin letters)
    const tags = (text: string) =>
      [...text].map((c) => String.fromCodePoint(0xe0000 + c.codePointAt(0)!)).join('');
    for (const name of [
      '\u3164',
      '\u2800',
      'Asha' + '\u0301'.repeat(50),
      '\u200B',
      'Admin\u200B',
      'As\u2060ha',
      'As\uFEFFha',
      'As\u00ADha',
      `Asha \u{1F3F4}${tags('ignore previous instructions')}\u{E007F}`,
      `Asha${tags('hidden')}`,
      'As\u180Eha',
    ]) {
      const res = await register(`${randomUUID()}@example.com`, name);
      expect({ name, status: res.status }).toEqual({ name, status: 400 });
    }
    for (const name of [
      'Asha Rao',
      'مریم می\u200Cخواهد', // ZWNJ (Persian)
      '\u0915\u094D\u200D\u0937', // ZWJ (Devanagari)
      'Jean-Luc O\u2019Neil',
      '李雷',
      '42',
      'Rhys \u{1F3F4}\u{E0067}\u{E0062}\u{E0077}\u{E006C}\u{E0073}\u{E007F}', // the Welsh flag: TAG characters
      '\u182E\u1823\u1829\u182D\u1823\u180E\u1828', // the Mongolian vowel separator
      'Family \u{1F468}\u200D\u{1F469}\u200D\u{1F467}',
      'Nguy\u1EC5n Th\u1ECB', // Vietnamese, precomposed
      'Nguye\u0302\u0303n', // … and decomposed: two marks on one letter
      '\u0915\u094D\u0937\u093F', // Devanagari with its signs
    ]) {
      const res = await register(`${randomUUID()}@example.com`, name);
      expect({ name, status: res.status }).toEqual({ name, status: 201 });
      expect(res.body.user.name).toBe(name);
    }
    // the invisible direction marks a right-to-left keyboard inserts are dropped, not refused
    const hebrew = await register(
      `${randomUUID()}@example.com`,
      '\u05D3\u05E0\u05D4 \u200F\u05DB\u05D4\u05DF',
    );
    expect([hebrew.status, hebrew.body.user?.name]).toEqual([
      201,
      '\u05D3\u05E0\u05D4 \u05DB\u05D4\u05DF',
    ]);
  });

  it('refuses text-direction controls in a review and shows a legacy author name on one line', async () => {
    const admin = (await createAdmin(t)).accessToken;
    const p = await createProduct(t, admin);
    const s = await registerCustomer(t.http);
    const order = await placeOrder(t.http, { userId: s.user.id, token: s.accessToken }, [
      { productId: p.id, quantity: 1 },
    ]);
    await repairOrders(t.db.pool, `UPDATE orders SET status = 'PAID' WHERE id = $1`, [
      order.body.id,
    ]);
    // (and a tower of stacked accents, drawn over the lines around it on the product's page)
    for (const comment of [
      'Refunds: \u202Emoc.elpmaxe-live//:sptth\u202C',
      'nice \u2067tea',
      'e' + '\u0301'.repeat(3999),
      `ok ${'a\u0300\u0301\u0302\u0303\u0304\u0305\u0306'.repeat(3)}`,
    ]) {
      const res = await t.http.post(
        `/v1/products/${p.id}/reviews`,
        { rating: 5, comment },
        { token: s.accessToken },
      );
      expectProblem(res, 400, 'VALIDATION_FAILED');
    }
    // a name stored before names were checked, with a break and an override in it
    await t.db.pool.query(`UPDATE users SET name = $2 WHERE id = $1`, [
      s.user.id,
      'Asha\nSupport: call us\u202Enow',
    ]);
    const ok = await t.http.post(
      `/v1/products/${p.id}/reviews`,
      { rating: 5, comment: 'Strong.\nFresh.' },
      { token: s.accessToken },
    );
    expect(ok.status).toBe(201);
    expect(ok.body.comment).toBe('Strong.\nFresh.');
    expect(ok.body.authorName).toBe('Asha Support: call us now');
    // and a comment stored before the controls were refused is shown without them
    await t.db.pool.query(`UPDATE reviews SET comment = $2 WHERE id = $1`, [
      ok.body.id,
      'Refunds: \u202Emoc.elpmaxe-live//:sptth\u202C',
    ]);
    const listed = await t.http.get(`/v1/products/${p.id}/reviews`);
    expect(listed.body.items[0].comment).toBe('Refunds: moc.elpmaxe-live//:sptth');
  });
});
