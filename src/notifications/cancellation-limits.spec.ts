import { Logger } from '@nestjs/common';
import type { AppConfig } from '../config/config';
import { MetricsService } from '../metrics/metrics.service';
import { mockOf } from '../../test/support/mocks';
import {
  CANCELLATION_EMAILS_PER_DAY,
  CancellationLimits,
  UNPROVEN_BUDGET_WARN_EVERY_MS,
} from './cancellation-limits';
import type { EmailDeliveryRepository } from './email-delivery.repository';

const START = new Date('2026-12-06T10:00:00Z').getTime();
const claim = { id: 'd1', attempt: 1 };

function setup(budget = 100) {
  let now = START;
  const deliveries = mockOf<EmailDeliveryRepository>(
    {
      suppressOverAllowance: jest.fn().mockResolvedValue(false),
      suppressOverUnprovenBudget: jest.fn().mockResolvedValue(false),
    },
    'deliveries',
  );
  const metrics = new MetricsService();
  const limits = new CancellationLimits(deliveries, { now: () => new Date(now) }, metrics, {
    mail: { cancellationsUnprovenPerDay: budget },
  } as AppConfig);
  const warn = jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
  const suppressed = async (reason: string) =>
    (await metrics.registry.getSingleMetricAsString('cancellation_emails_suppressed_total'))
      .split('\n')
      .find((l) => l.includes(`reason="${reason}"`))
      ?.split(' ')[1];
  const advance = (ms: number) => (now += ms);
  return { limits, deliveries, warn, suppressed, advance };
}

describe('CancellationLimits', () => {
  afterEach(() => jest.restoreAllMocks());

  it("asks the inbox's allowance first, then the shop's budget for unproven inboxes, over the last 24 h", async () => {
    const { limits, deliveries, suppressed } = setup(250);
    expect(await limits.suppressed(claim, 'kate@example.com', 'k')).toBe(false);
    const since = new Date(START - 86_400_000);
    expect(deliveries.suppressOverAllowance).toHaveBeenCalledWith(
      { ...claim, recipient: 'kate@example.com', kind: 'cancellation' },
      CANCELLATION_EMAILS_PER_DAY,
      since,
      expect.any(String),
      new Date(START),
    );
    expect(deliveries.suppressOverUnprovenBudget).toHaveBeenCalledWith(
      { ...claim, recipient: 'kate@example.com' },
      250,
      since,
      expect.any(String),
      new Date(START),
    );
    expect(await suppressed('inbox_allowance')).toBe('0');
    expect(await suppressed('unproven_budget')).toBe('0');
  });

  it("one held back by the inbox's allowance is not asked of the budget (it takes no place in it)", async () => {
    const { limits, deliveries, suppressed } = setup();
    deliveries.suppressOverAllowance.mockResolvedValue(true);
    expect(await limits.suppressed(claim, 'kate@example.com', 'k')).toBe(true);
    expect(deliveries.suppressOverUnprovenBudget).not.toHaveBeenCalled();
    expect(await suppressed('inbox_allowance')).toBe('1');
  });

  it('over the budget: each counted, the warning said at most once per interval with how many since', async () => {
    const { limits, deliveries, warn, suppressed, advance } = setup(100);
    deliveries.suppressOverUnprovenBudget.mockResolvedValue(true);
    for (let i = 0; i < 5; i++) {
      expect(await limits.suppressed(claim, `x${i}@example.com`, `k${i}`)).toBe(true);
      advance(1_000);
    }
    expect(await suppressed('unproven_budget')).toBe('5');
    expect(warn).toHaveBeenCalledTimes(1);
    expect(warn.mock.calls[0][0]).toMatch(/budget of 100 a day .* 1 since last said/);
    advance(UNPROVEN_BUDGET_WARN_EVERY_MS);
    await limits.suppressed(claim, 'y@example.com', 'k6');
    expect(warn).toHaveBeenCalledTimes(2);
    expect(warn.mock.calls[1][0]).toMatch(/5 since last said/);
    expect(warn.mock.calls[1][0]).not.toMatch(/@/); // no address in the log
  });
});
