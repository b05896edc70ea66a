import { isUuid } from '../common/ids';
import { isEmailKind } from '../notifications/email-job';
import { JobName } from './queues';

/** A problem with one field of a job's data, or null. */
type FieldCheck = (data: Readonly<Record<string, unknown>>) => string | null;

const uuid =
  (field: string, optional = false): FieldCheck =>
  (data) =>
    (optional && data[field] === undefined) || isUuid(data[field])
      ? null
      : `${field} is not a uuid`;

/** A payment provider's event id (`evt_…`: the webhook_events key). */
const eventId: FieldCheck = ({ eventId: id }) =>
  typeof id === 'string' && id.length > 0 && id.length <= 255 ? null : 'eventId is not an event id';

const emailKind: FieldCheck = ({ kind }) =>
  isEmailKind(kind) ? null : 'kind is not an email kind';

/** The ids each job's data must carry (JobPayloads); a pass over the whole shop carries none. */
const CHECKS: Readonly<Record<JobName, readonly FieldCheck[]>> = {
  [JobName.ExpireReservation]: [uuid('orderId')],
  [JobName.SweepExpiredReservations]: [],
  [JobName.ReleaseWithdrawnReservations]: [uuid('productId')],
  [JobName.RecomputeRecommendations]: [],
  [JobName.ProcessPaymentEvent]: [eventId],
  [JobName.CancelPaymentIntent]: [uuid('orderId')],
  [JobName.SettleRefund]: [uuid('refundId')],
  [JobName.ReconcilePayments]: [],
  [JobName.SweepPaymentOrphans]: [],
  [JobName.PurgeIdempotencyKeys]: [],
  [JobName.PurgeRefreshTokens]: [],
  [JobName.PurgeOutbox]: [],
  [JobName.PurgeWebhookEvents]: [],
  [JobName.SendEmail]: [uuid('orderId'), emailKind, uuid('refundId', true)],
  [JobName.ReconcileEmails]: [],
  [JobName.ReconcileImages]: [],
};

/**
 * What is wrong with a job's data, or null. A job's data comes from Redis, which a producer's bug
 * or anyone who can write there may fill with anything; and a repository asked
 * `findOneBy({ orderId: undefined })` drops the condition and answers an arbitrary row — a
 * cancel-intent job without its order id cancelled whichever payment came first. Such a job is
 * refused at once (QueueProcessor: no retries, it would only fail again), before its handler.
 */
export function jobPayloadProblem(name: JobName, data: unknown): string | null {
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    return 'its data is not an object';
  }
  for (const check of CHECKS[name]) {
    const problem = check(data as Record<string, unknown>);
    if (problem) return problem;
  }
  return null;
}
