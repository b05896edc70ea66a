/**
 * Products in one order — and in one cart, which is checked out as one order. Here, not in the
 * orders folder: the cart caps its lines with it, and orders builds on the cart.
 */
export const MAX_ORDER_LINES = 100;
