/**
 * The demo accounts `npm run seed` creates on a development instance. Their passwords are
 * published (README, the seed's output), so outside development they never sign in, whatever
 * the database holds: a seed run against the wrong DATABASE_URL must not open an admin account.
 */
export const DEMO_ADMIN = { email: 'admin@shop.local', password: 'admin-demo-password' };
export const DEMO_CUSTOMER = { email: 'customer@shop.local', password: 'customer-demo-password' };

/** True when (email, password) is one of the published demo pairs (email already normalised). */
export function isPublishedDemoCredential(email: string, password: string): boolean {
  return [DEMO_ADMIN, DEMO_CUSTOMER].some(
    (demo) => demo.email === email && demo.password === password,
  );
}
