import { AppError } from '../http/errors.js';

export const fileTooLarge = (max: number) =>
  new AppError({
    code: 'FILE_TOO_LARGE',
    status: 413,
    message: `The file is larger than this server accepts (${max} bytes).`,
    extra: { max_bytes: max },
  });

export const unsupportedMediaType = (type: string) =>
  new AppError({ code: 'UNSUPPORTED_MEDIA_TYPE', status: 415, message: `Files of type ${type} are not accepted here.` });

export const missingFile = () =>
  new AppError({ code: 'MISSING_FILE', status: 400, message: 'Send a file in the field "file" (several files become one drop).' });

export const uploadStalled = () =>
  new AppError({ code: 'UPLOAD_STALLED', status: 408, message: 'The upload stopped sending data and was cut off.' });

export const uploadAborted = () => new AppError({ code: 'UPLOAD_ABORTED', status: 400, message: 'The upload was interrupted.' });
