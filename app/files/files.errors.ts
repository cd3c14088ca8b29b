import { AppError } from '../http/errors.js';
import type { GoneReason } from './files.repository.js';

export const fileNotFound = () =>
  new AppError({ code: 'FILE_NOT_FOUND', status: 404, message: 'No file matches this passphrase.' });

export const fileGone = (reason: GoneReason) =>
  new AppError({
    code: 'FILE_GONE',
    status: 410,
    message: reason === 'burned' ? 'This file was downloaded the allowed number of times and is destroyed.' : reason === 'expired' ? 'This file has expired and is destroyed.' : 'This file was deleted by its sender.',
    extra: { reason },
  });

export const previewAlreadyUsed = () =>
  new AppError({ code: 'PREVIEW_ALREADY_USED', status: 410, message: 'The one-time preview of this file was already used.' });

export const invalidDeleteToken = () =>
  new AppError({ code: 'INVALID_DELETE_TOKEN', status: 403, message: 'The delete token does not match this file.' });

export const fileTooLarge = (max: number) =>
  new AppError({ code: 'FILE_TOO_LARGE', status: 413, message: `The file is larger than this server accepts (${max} bytes).`, extra: { max_bytes: max } });

export const unsupportedMediaType = (type: string) =>
  new AppError({ code: 'UNSUPPORTED_MEDIA_TYPE', status: 415, message: `Files of type ${type} are not accepted here.` });

export const missingFile = () =>
  new AppError({ code: 'MISSING_FILE', status: 400, message: 'Send exactly one file, in the field "file".' });

export const uploadStalled = () =>
  new AppError({ code: 'UPLOAD_STALLED', status: 408, message: 'The upload stopped sending data and was cut off.' });

export const uploadAborted = () =>
  new AppError({ code: 'UPLOAD_ABORTED', status: 400, message: 'The upload was interrupted.' });
