# Stand-in for the official valkey/valkey image, built by ensure-base-images.sh when no registry is
# reachable: Valkey 8 from bookworm-backports on the Debian stand-in, laid out like the official
# image (user valkey, created by the package; /data as the working directory and a volume; 6379).
FROM debian:bookworm-slim
ARG APT_MIRROR=http://deb.debian.org/debian
RUN echo "deb $APT_MIRROR bookworm-backports main" >/etc/apt/sources.list.d/backports.list \
 && apt-get update \
 && apt-get install -y --no-install-recommends -t bookworm-backports valkey-server \
 && rm -rf /var/lib/apt/lists/*
RUN mkdir /data && chown valkey:valkey /data
COPY valkey-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
VOLUME /data
WORKDIR /data
EXPOSE 6379
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["valkey-server"]
