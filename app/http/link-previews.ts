import type { Request, RequestHandler } from 'express';

/**
 * Link-unfurling agents (chat apps, social sites, mail scanners) fetch a shared URL to draw a
 * preview, often with `Accept: *\/*`: they must get the page, which spends nothing, never the file
 * (SPEC §10.2). Matched case-insensitively anywhere in the User-Agent.
 */
const UNFURLERS = [
  'slackbot', // Slack: Slackbot-LinkExpanding, Slack-ImgProxy
  'slack-imgproxy',
  'discordbot',
  'msteams', // Microsoft Teams link previews
  'microsoftpreview', // Teams and Outlook link previews (MicrosoftPreview/2.0)
  'skypeuripreview', // Skype and Teams
  'whatsapp',
  'telegrambot',
  'twitterbot',
  'facebookexternalhit', // also what iMessage sends for its previews
  'facebot',
  'linkedinbot',
  'applebot',
  'iframely',
  'embedly',
  'redditbot',
  'mattermost',
  'rocket.chat',
  'zoombot',
  'googlebot',
  'bingpreview',
  'yahoo! slurp',
  'microsoft office', // Outlook and Office link checks (Safe Links)
  'ms-office',
  'office365',
  'proofpoint', // mail security scanners
  'mimecast',
  'barracuda',
  'google-safety',
  'google-inspectiontool',
];

function isLinkPreviewAgent(userAgent: string | undefined): boolean {
  if (!userAgent) return false;
  const agent = userAgent.toLowerCase();
  return UNFURLERS.some((name) => agent.includes(name));
}

/**
 * Whether a request for `/download/:key` or `/preview/:key` should get the recipient page instead of
 * the file or the one-time preview: a browser navigation (its Accept prefers HTML) or a link-preview
 * agent, whatever it accepts.
 */
export function wantsPage(req: Request): boolean {
  return isLinkPreviewAgent(req.get('user-agent')) || req.accepts(['application/octet-stream', 'text/html']) === 'text/html';
}

/**
 * Before a key route's guards: what wantsPage() picks gets a 303 to the recipient page (the key in
 * its fragment), which spends nothing, costs no lookup budget and is never refused as blocked.
 */
export const redirectToPage: RequestHandler = (req, res, next) => {
  if (!wantsPage(req)) return next();
  res.setHeader('Cache-Control', 'no-store');
  res.redirect(303, `/d#${encodeURIComponent(String(req.params.key)).replace(/%2D/gi, '-')}`);
};
