import { AppError } from '../http/errors.js';

/** /metrics without the METRICS_TOKEN it requires. */
export const metricsUnauthorized = () =>
  new AppError({
    code: 'UNAUTHORIZED',
    status: 401,
    message: 'These metrics need a bearer token.',
    headers: { 'WWW-Authenticate': 'Bearer realm="metrics"' },
  });
