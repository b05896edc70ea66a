import { redisOptionsFromUrl } from './redis-connection';

describe('redisOptionsFromUrl (the BullMQ connections)', () => {
  it('reads host, port, credentials, database and TLS as the app client does', () => {
    expect(redisOptionsFromUrl('rediss://app:p%40ss@cache.example.net:6380/2')).toEqual({
      host: 'cache.example.net',
      port: 6380,
      username: 'app',
      password: 'p@ss',
      db: 2,
      tls: {},
    });
    expect(redisOptionsFromUrl('redis://127.0.0.1')).toMatchObject({
      host: '127.0.0.1',
      port: 6379,
      db: 0,
    });
  });

  it('takes an IPv6 address without its brackets (with them it is looked up as a host name, forever)', () => {
    expect(redisOptionsFromUrl('redis://:pw@[fd00::5]:6379')).toMatchObject({
      host: 'fd00::5',
      port: 6379,
      password: 'pw',
    });
    expect(redisOptionsFromUrl('redis://[::1]')).toMatchObject({ host: '::1', port: 6379 });
  });
});
