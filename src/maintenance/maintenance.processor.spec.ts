import type { Job } from 'bullmq';
import type { RefreshTokenRepository } from '../auth/refresh-token.repository';
import type { IdempotencyService } from '../idempotency/idempotency.service';
import type { OutboxRepository } from '../outbox/outbox.repository';
import { MaintenanceProcessor } from './maintenance.processor';
import { mockOf } from '../../test/support/mocks';

const now = new Date('2026-11-22T12:00:00Z');

function setup() {
  const outbox = mockOf<OutboxRepository>({ purgePublished: jest.fn().mockResolvedValueOnce(5000).mockResolvedValueOnce(12).mockResolvedValue(0) }, 'outbox');
  const refreshTokens = mockOf<RefreshTokenRepository>({ purgeEnded: jest.fn().mockResolvedValueOnce(3).mockResolvedValue(0) }, 'refreshTokens');
  const idempotency = mockOf<IdempotencyService>({ purgeExpired: jest.fn().mockResolvedValue(7) }, 'idempotency');
  const processor = new MaintenanceProcessor(
    idempotency,
    outbox,
    refreshTokens,
    { now: () => now },
  );
  return { processor, outbox, refreshTokens };
}

const job = (name: string) => ({ name }) as Job;

describe('MaintenanceProcessor', () => {
  it('purges published outbox rows older than 7 days, batch after batch until none is left', async () => {
    const { processor, outbox } = setup();
    expect(await processor.process(job('maintenance.purge-outbox'))).toBe(5012);
    expect(outbox.purgePublished).toHaveBeenCalledTimes(3);
    expect(outbox.purgePublished).toHaveBeenCalledWith(new Date('2026-11-15T12:00:00Z'));
  });

  it('purges refresh-token families that ended more than 30 days ago', async () => {
    const { processor, refreshTokens } = setup();
    expect(await processor.process(job('maintenance.purge-refresh-tokens'))).toBe(3);
    expect(refreshTokens.purgeEnded).toHaveBeenCalledWith(new Date('2026-10-23T12:00:00Z'));
  });

  it('refuses a job it does not know', async () => {
    await expect(setup().processor.process(job('maintenance.nope'))).rejects.toThrow(/cannot handle/);
  });
});
