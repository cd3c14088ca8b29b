import { AppError } from '../http/errors.js';
import { WORDING } from '../shared/wording.js';
import type { GoneReason } from './files.repository.js';

export const fileNotFound = () => new AppError({ code: 'FILE_NOT_FOUND', status: 404, message: WORDING.notFound });

export const fileGone = (reason: GoneReason) =>
  new AppError({ code: 'FILE_GONE', status: 410, message: WORDING.gone[reason], extra: { reason } });

export const previewAlreadyUsed = () =>
  new AppError({ code: 'PREVIEW_ALREADY_USED', status: 410, message: 'The one-time preview of this file was already used.' });

export const invalidDeleteToken = () =>
  new AppError({ code: 'INVALID_DELETE_TOKEN', status: 403, message: 'The delete token does not match this file.' });
