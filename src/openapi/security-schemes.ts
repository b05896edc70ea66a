/** The document's security schemes, by name (their definitions: buildOpenApiDocument). */
/** A client's access token (register, login, refresh): every route but the @Public() ones. */
export const BEARER_SCHEME = 'bearer';
/** The object store's webhook target: `Authorization: Bearer <STORAGE_WEBHOOK_TOKEN>`. */
export const STORAGE_TOKEN_SCHEME = 'storageToken';
