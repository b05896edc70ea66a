/**
 * Redis error replies that mean "not now" (the server's state), whatever the command — also as
 * relayed from inside a Lua script (BullMQ's adds are scripts: `ERR Error running script …:
 * OOM command not allowed …`): an outage to wait out, not a fault of the request.
 */
export const REDIS_OUTAGE_REPLY =
  /(?:^|: )(OOM|READONLY|LOADING|BUSY|MASTERDOWN|CLUSTERDOWN|TRYAGAIN|NOREPLICAS|MISCONF)\b/;
