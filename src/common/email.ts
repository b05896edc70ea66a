/** Emails are compared and stored trimmed and lower-cased (the users table checks it). */
export function normalizeEmail(email: string): string {
  return email.trim().toLowerCase();
}
