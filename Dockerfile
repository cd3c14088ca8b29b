# Cinderbox: one image, two roles. API (default command) and janitor worker:
#   docker run … cinderbox                                   -> node dist/app/main.js
#   docker run --health-cmd 'node dist/scripts/healthcheck.js --worker' … cinderbox node dist/workers/main.js
# See compose.yaml and docs/OPERATIONS.md. No `# syntax=` line on purpose: it makes BuildKit fetch a
# frontend image from a registry. Without registry access, scripts/image-kit provides the base images.

# --- build: compile TypeScript with the dev dependencies -------------------------------------------
FROM node:22-bookworm-slim AS build
# The classic builder keeps this stage as an untagged image (its cache); the label lets a host clean
# up older ones: docker images --filter dangling=true --filter label=io.cinderbox.stage=build
LABEL io.cinderbox.stage=build
WORKDIR /app
# A C compiler for scrypt's core (native/scrypt.c -> build/scrypt.node, docs/DECISIONS.md); only the
# compiled addon goes on to the runtime stage.
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
# --ignore-scripts: `prepare` would build before the sources are here; the build runs below.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY native ./native
COPY app ./app
COPY workers ./workers
COPY scripts ./scripts
RUN npm run build \
 && test -f build/scrypt.node

# --- runtime: production dependencies, compiled code, wordlist, pages and Lua scripts only ----------
FROM node:22-bookworm-slim AS runtime
# tini as PID 1: forwards SIGTERM to node and reaps zombies.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/*
ENV HOST=0.0.0.0 \
    NODE_ENV=production \
    PORT=8000 \
    WORKER_HEALTH_FILE=/tmp/cinderbox-worker.beat \
    LOG_DIR=/app/logs \
    STORAGE_PATH=/data/uploads \
    TEMP_PATH=/data/temp
# Runtime tuning, measured in docs/BENCHMARKS.md: glibc's per-thread malloc arenas and its rising mmap
# threshold and V8's young generation were most of the API's peak RSS (app/shared/heap.ts). compose.yaml
# starts the API and worker with the rest of V8's flags (app/shared/heap.ts: NODE_OPTIONS refuses
# --heap-growing-percent).
ENV MALLOC_ARENA_MAX=2 \
    MALLOC_MMAP_THRESHOLD_=1048576 \
    NODE_OPTIONS=--max-semi-space-size=2
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: `prepare` runs tsc, which is a dev dependency and not installed here.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && npm cache clean --force
# Compiled code of both roles with the files it reads at run time (Lua scripts, pages: npm run build
# copies them into dist/), and the operator scripts that ship, one line each: the local launcher, the
# bench and the doc generators in dist/scripts stay out of the image.
COPY --from=build /app/dist/app ./dist/app
COPY --from=build /app/dist/workers ./dist/workers
COPY --from=build /app/build/scrypt.node ./build/
COPY --from=build /app/dist/scripts/healthcheck.js ./dist/scripts/
# The admin command: docker compose exec api node dist/scripts/admin.js doctor (docs/OPERATIONS.md).
COPY --from=build /app/dist/scripts/admin.js ./dist/scripts/
COPY --from=build /app/dist/scripts/admin ./dist/scripts/admin
COPY data ./data
# Code stays root-owned (read-only to the app). The writable places belong to `node`, so named
# volumes mounted on them start with that ownership. They stay empty: Docker copies an image's files
# into a fresh named volume as each container using it is created, and two containers created at once
# (`compose up` creates api and worker together) race on every directory to copy and one fails with
# "mkdir …: file exists" (moby/moby#43068). Both roles create STORAGE_PATH and TEMP_PATH (0700) at start.
RUN mkdir -p /data /app/logs \
 && chown node:node /data /app/logs \
 && chmod 700 /data
USER node
VOLUME ["/data", "/app/logs"]
EXPOSE 8000
# No curl in the image: a few lines of node fetch GET /health on 127.0.0.1:$PORT (200 = healthy/degraded).
# Docker runs the first probe one interval after start (engines before 25 know no --start-interval),
# so the interval is how soon `up` turns healthy; each probe costs a node start, about 80 ms of CPU.
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 CMD ["node", "dist/scripts/healthcheck.js"]
ENTRYPOINT ["/usr/bin/tini", "--"]
# node directly, not npm: signals reach node and nothing writes npm logs on a read-only filesystem.
CMD ["node", "dist/app/main.js"]
