/**
 * The image's HEALTHCHECK (no curl in the image): GET http://127.0.0.1:$PORT/health within 3 s.
 * Exit 0 on 200 (healthy or degraded: uploads and downloads still work), 1 otherwise.
 * Reads nothing from the environment but PORT, so it works with any configuration.
 */
const port = process.env.PORT ?? '8000';

try {
  const res = await fetch(`http://127.0.0.1:${port}/health`, { signal: AbortSignal.timeout(3000) });
  process.exit(res.status === 200 ? 0 : 1);
} catch {
  process.exit(1);
}
