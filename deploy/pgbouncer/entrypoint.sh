#!/bin/sh
# The one user numbase connects as, with the password from the environment (.env), written to
# a runtime file only this container reads.
set -eu
: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set}"
umask 077
quote() { printf '%s' "$1" | sed 's/"/""/g'; }  # userlist.txt doubles a quote inside quotes
printf '"%s" "%s"\n' "$(quote "${POSTGRES_USER:-numbase}")" "$(quote "$POSTGRES_PASSWORD")" \
    > /run/pgbouncer/userlist.txt
exec pgbouncer /etc/pgbouncer/numbase.ini
