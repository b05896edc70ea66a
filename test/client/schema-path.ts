/** Where `npm run openapi` writes the openapi-typescript output (relative to the repository root). */
export const CLIENT_SCHEMA = 'test/client/schema.d.ts';
