#!/bin/sh
# Like the official image's entrypoint: a valkey-server started without a config file accepts
# connections from other containers (protected mode off) unless the command says otherwise.
# Debian's build keeps protected mode on, which would refuse the api and worker containers.
set -e
if [ "$1" = valkey-server ]; then
  case " $* " in
    *" --protected-mode "*) ;;
    *) set -- "$@" --protected-mode no ;;
  esac
fi
exec "$@"
