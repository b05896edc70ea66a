import type { RefreshTokenRepository } from '../auth/refresh-token.repository';
import type { IdempotencyService } from '../idempotency/idempotency.service';
import type { OutboxRepository } from '../outbox/outbox.repository';
import { mockOf } from '../../test/support/mocks';
import { MaintenanceService } from './maintenance.service';

const now = new Date('2026-11-22T12:00:00Z');

function setup() {
  const outbox = mockOf<OutboxRepository>(
    {
      purgePublished: jest
        .fn()
        .mockResolvedValueOnce(5000)
        .mockResolvedValueOnce(12)
        .mockResolvedValue(0),
    },
    'outbox',
  );
  const refreshTokens = mockOf<RefreshTokenRepository>(
    {
      purgeEnded: jest.fn().mockResolvedValueOnce(3).mockResolvedValue(0),
      purgeDeletedBefore: jest.fn().mockResolvedValueOnce(2).mockResolvedValue(0),
    },
    'refreshTokens',
  );
  const idempotency = mockOf<IdempotencyService>(
    { purgeExpired: jest.fn().mockResolvedValue(7) },
    'idempotency',
  );
  const maintenance = new MaintenanceService(idempotency, outbox, refreshTokens, {
    now: () => now,
  });
  return { maintenance, outbox, refreshTokens };
}

describe('MaintenanceService', () => {
  it('purges published outbox rows older than 7 days, batch after batch until none is left', async () => {
    const { maintenance, outbox } = setup();
    expect(await maintenance.purgeOutbox()).toBe(5012);
    expect(outbox.purgePublished).toHaveBeenCalledTimes(3);
    expect(outbox.purgePublished).toHaveBeenCalledWith(new Date('2026-11-15T12:00:00Z'));
  });

  it('purges refresh-token families that ended more than 30 days ago', async () => {
    const { maintenance, refreshTokens } = setup();
    expect(await maintenance.purgeRefreshTokens()).toBe(3);
    expect(refreshTokens.purgeEnded).toHaveBeenCalledWith(new Date('2026-10-23T12:00:00Z'));
    // and the tombstones of sessions deleted with their account, as long after
    expect(refreshTokens.purgeDeletedBefore).toHaveBeenCalledTimes(2);
    expect(refreshTokens.purgeDeletedBefore).toHaveBeenCalledWith(new Date('2026-10-23T12:00:00Z'));
  });
});
