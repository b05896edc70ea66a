/** Roles and what they may do. Admin endpoints declare a permission, never a role name. */
export const ROLES = ['customer', 'staff', 'admin'] as const;
export type Role = (typeof ROLES)[number];

export const PERMISSIONS = [
  'catalog:write',
  'inventory:write',
  'orders:read_all',
  'orders:refund',
  'orders:fulfil',
  'queues:view',
] as const;
export type Permission = (typeof PERMISSIONS)[number];

const ROLE_PERMISSIONS: Record<Role, readonly Permission[]> = {
  customer: [],
  staff: ['catalog:write', 'inventory:write', 'orders:read_all', 'orders:fulfil'],
  admin: PERMISSIONS,
};

export function permissionsOf(role: Role): readonly Permission[] {
  return ROLE_PERMISSIONS[role];
}
