import {
  cancellationSentence,
  escapeHtml,
  formatMoney,
  renderEmail,
  type EmailOrder,
} from './email-templates';

const order: EmailOrder = {
  id: '0c8e4f2a-1111-4222-8333-944445555666',
  currency: 'INR',
  totalAmount: 173_250,
  cancellationReason: null,
  items: [
    {
      productId: 'p1',
      sku: 'A',
      name: 'Trail <mix> & "nuts"',
      quantity: 2,
      unitPriceAmount: 24_900,
      lineTotalAmount: 49_800,
    },
    {
      productId: 'p2',
      sku: 'B',
      name: 'Hamper',
      quantity: 1,
      unitPriceAmount: 123_450,
      lineTotalAmount: 123_450,
    },
  ],
};

describe('formatMoney', () => {
  it('formats minor units with the currency code, thousands separators and the minor digits', () => {
    expect(formatMoney(123_450, 'INR')).toBe('INR 1,234.50');
    expect(formatMoney(5, 'INR')).toBe('INR 0.05');
    expect(formatMoney(0, 'EUR')).toBe('EUR 0.00');
    expect(formatMoney(123_456_789_01, 'USD')).toBe('USD 123,456,789.01');
    expect(formatMoney(-2_500, 'INR')).toBe('INR -25.00');
  });

  it('knows currencies without or with three minor digits', () => {
    expect(formatMoney(1500, 'JPY')).toBe('JPY 1,500');
    expect(formatMoney(1500, 'KWD')).toBe('KWD 1.500');
  });

  it('counts ISO 4217 minor units, not the digits ICU displays (which drop them for IDR, PKR, HUF, IQD…)', () => {
    expect(formatMoney(249_900, 'PKR')).toBe('PKR 2,499.00');
    expect(formatMoney(1_500_000, 'IDR')).toBe('IDR 15,000.00');
    expect(formatMoney(99_900, 'HUF')).toBe('HUF 999.00');
    expect(formatMoney(1500, 'IQD')).toBe('IQD 1.500');
    expect(formatMoney(1500, 'ISK')).toBe('ISK 1,500');
  });

  it('is exact up to the largest safe integer and refuses fractions', () => {
    expect(formatMoney(Number.MAX_SAFE_INTEGER, 'INR')).toBe('INR 90,071,992,547,409.91');
    expect(() => formatMoney(1.5, 'INR')).toThrow(/integer/);
  });
});

describe('escapeHtml', () => {
  it('escapes the five HTML-significant characters', () => {
    expect(escapeHtml(`<a href="x">'&'</a>`)).toBe(
      '&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;',
    );
  });
});

describe('renderEmail', () => {
  it('lists every line (name, quantity, unit price, line total) and the total, in text and HTML', () => {
    const { subject, text, html } = renderEmail({
      kind: 'order_confirmation',
      order,
    });
    expect(subject).toBe('Order 0C8E4F2A confirmed');
    expect(text.split('\n')[0]).toBe('Hello,');
    expect(text).toContain('2 x Trail <mix> & "nuts" @ INR 249.00 = INR 498.00');
    expect(text).toContain('1 x Hamper @ INR 1,234.50 = INR 1,234.50');
    expect(text).toContain('Total: INR 1,732.50');
    expect(html).toContain(
      '<td style="padding:4px 8px">Trail &lt;mix&gt; &amp; &quot;nuts&quot;</td>',
    );
    expect(html).toContain('INR 1,732.50');
    expect(html).not.toContain('<mix>');
  });

  it("says nothing the customer typed (no account name: an address is not proven, its name could be anyone's text)", () => {
    const { text, html } = renderEmail({ kind: 'payment_receipt', order });
    expect(text.split('\n')[0]).toBe('Hello,');
    expect(html).toContain('<p>Hello,</p>');
  });

  it('has a subject per kind', () => {
    const base = { order };
    expect(renderEmail({ ...base, kind: 'payment_receipt' }).subject).toBe(
      'Receipt for order 0C8E4F2A',
    );
    expect(renderEmail({ ...base, kind: 'cancellation' }).subject).toBe('Order 0C8E4F2A cancelled');
    expect(
      renderEmail({ ...base, kind: 'refund', refund: { amount: 50_000, currency: 'INR' } }).subject,
    ).toBe('Refund of INR 500.00 for order 0C8E4F2A');
  });

  it('states the amount paid on the receipt and the amount refunded on a refund', () => {
    const base = { order };
    expect(renderEmail({ ...base, kind: 'payment_receipt' }).text).toContain(
      'We have received your payment of INR 1,732.50 for order 0C8E4F2A.',
    );
    expect(
      renderEmail({ ...base, kind: 'refund', refund: { amount: 50_000, currency: 'INR' } }).text,
    ).toContain('We have refunded INR 500.00 for order 0C8E4F2A.');
  });

  it('explains each cancellation reason in words', () => {
    const text = (reason: EmailOrder['cancellationReason']) =>
      renderEmail({
        kind: 'cancellation',
        order: { ...order, cancellationReason: reason },
      }).text;
    expect(text('CUSTOMER_REQUESTED')).toContain('has been cancelled, as you requested.');
    expect(text('PAYMENT_FAILED')).toContain(
      'because we could not accept its payment. If you were charged, the full amount is refunded to you.',
    );
    expect(text('RESERVATION_EXPIRED')).toContain('because the payment was not completed in time');
    expect(text('RESERVATION_EXPIRED')).not.toContain('RESERVATION_EXPIRED');
    expect(cancellationSentence('X', null)).toBe('Your order X has been cancelled.');
    // a total the payment provider refused as such (under its smallest charge): nothing was tried
    expect(
      renderEmail({
        kind: 'cancellation',
        order: { ...order, cancellationReason: 'PAYMENT_FAILED', unchargeableTotal: true },
      }).text,
    ).toContain(
      'because its total is an amount our payment provider cannot charge. Nothing has been charged for it.',
    );
  });
});
