/**
 * Sentences a person reads, shared by the API's error messages and the pages: the pages load this
 * table as /static/wording.js (pages.routes.ts), so a file's fate is worded the same everywhere.
 */
export const WORDING = {
  /** Why a file is gone, said to whoever holds its passphrase. */
  gone: {
    burned: 'This file was downloaded as many times as its sender allowed, and is destroyed.',
    expired: 'This file reached its expiry time and is destroyed.',
    deleted: 'The sender deleted this file.',
  },
  /** The same, said to the sender on the upload page. */
  goneForSender: {
    burned: 'The last download has happened. The file is now destroyed.',
    expired: 'The time is up. The file is now destroyed.',
    deleted: 'Deleted. The link and passphrase no longer work.',
  },
  notFound: 'No file matches this passphrase.',
} as const;
