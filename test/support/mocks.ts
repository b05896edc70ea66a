/**
 * Typed test doubles for unit specs, instead of `{ … } as unknown as SomeService`.
 *
 *   const users = mockOf<UserRepository>({ findById: jest.fn().mockResolvedValue(user) }, 'users');
 *   new AuthService(users, …);                       // a UserRepository to the compiler
 *   users.findById.mockResolvedValueOnce(null);      // typed: the argument must be a User | null
 *   expect(users.findById).toHaveBeenCalledWith('u-1');
 *
 * The members given are the double's behaviour; plain functions among them are wrapped in
 * `jest.fn` so that their calls can be asserted too. Any other method the code under test calls
 * is a `jest.fn` that fails with "users.create() was called but not mocked" (with `name` =
 * 'users') until a test gives it an implementation (`users.create.mockResolvedValue(…)`), so a spec states only
 * what it uses and a new dependency shows up as a clear failure, not as `undefined is not a function`.
 */
export type Mock<T> = jest.Mocked<T>;

/**
 * Members a double may be given: any subset of the real ones (a misspelt or renamed member does
 * not compile). A method may be given any function: fakes often answer only the overload the
 * code uses, and the returned double is typed as the real methods for what the test does next.
 */
export type MockMembers<T> = {
  [K in keyof T]?: T[K] extends (...args: any[]) => unknown ? (...args: never[]) => unknown : T[K];
};

/** Keys that frameworks and jest itself probe on any object (thenables, printers, matchers). */
const PROBED = new Set<PropertyKey>([
  'then',
  'toJSON',
  'asymmetricMatch',
  '$$typeof',
  'nodeType',
  'tagName',
  'constructor',
  'inspect',
]);

export function mockOf<T extends object>(members: MockMembers<T> = {}, name = 'mock'): Mock<T> {
  const target: Record<PropertyKey, unknown> = {};
  for (const [key, value] of Object.entries(members)) {
    target[key] =
      typeof value === 'function' && !jest.isMockFunction(value)
        ? jest.fn(value as (...args: unknown[]) => unknown)
        : value;
  }
  const double = new Proxy(target, {
    get(obj, key) {
      if (key in obj || typeof key === 'symbol' || PROBED.has(key) || key.startsWith('@@'))
        return obj[key];
      const stub = jest.fn(() => {
        throw new Error(`${name}.${key}() was called but not mocked`);
      });
      obj[key] = stub;
      return stub;
    },
  });
  return double as Mock<T>;
}
