import { SideConnection } from '../../src/database/side-connection';
import { TestDatabase, createTestDatabase } from '../support/test-database';

/**
 * The side connection's probe really asks the server: the circuit breaker's probes (no check)
 * once resolved on a kept connection without sending anything — a frozen server read as
 * answering. A statement that fails must fail the probe, with a check or without.
 */
describe('SideConnection.selectOne', () => {
  let db: TestDatabase;
  let side: SideConnection;

  beforeAll(async () => {
    db = await createTestDatabase();
    side = new SideConnection(db.url, 'test/side-connection');
  });
  afterAll(async () => {
    side?.close();
    await db?.drop();
  });

  it('sends its statement with or without a check; a failing one fails the probe', async () => {
    await expect(side.selectOne(2_000)).resolves.toBeUndefined();
    await expect(side.selectOne(2_000, 'SELECT 1/0')).rejects.toThrow(/division by zero/);
    await expect(side.selectOne(2_000, 'SELECT 1/0', () => undefined)).rejects.toThrow(
      /division by zero/,
    );
    let seen: unknown;
    await side.selectOne(2_000, 'SELECT 42 AS answer', (row) => (seen = row?.answer));
    expect(seen).toBe(42);
    await expect(
      side.selectOne(2_000, 'SELECT true AS read_only', (row) => {
        if (row?.read_only === true) throw new Error('refused');
      }),
    ).rejects.toThrow('refused');
    // a probe after a refusal opens a new connection and works
    await expect(side.selectOne(2_000)).resolves.toBeUndefined();
  });
});
