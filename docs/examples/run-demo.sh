#!/bin/sh
# The README's main job on the shipped example, in a scratch copy: a dry run, then the sync,
# then the backup it made. Run as root from the repository root: `make demo`.
set -eu
repo=$(cd "$(dirname "$0")/../.." && pwd)
scratch=$(mktemp -d /tmp/secretsync-demo.XXXXXX)
mkdir -p "$scratch/opt/shared-secrets" "$scratch/opt/es-inventory-hub" "$scratch/backups"
install -m 0600 "$repo/docs/examples/api-secrets.env" "$scratch/opt/shared-secrets/api-secrets.env"
install -m 0640 -o nobody -g nogroup "$repo/docs/examples/es-inventory-hub.env" \
    "$scratch/opt/es-inventory-hub/.env"
sed -e "s#= /opt/#= $scratch/opt/#" "$repo/docs/examples/secretsync.conf" > "$scratch/secretsync.conf"
printf 'backup_dir = %s/backups\n' "$scratch" >> "$scratch/secretsync.conf"

run() {
    echo "\$ secretsync $*"
    (cd "$repo" && /usr/bin/python3 -m secretsync -c "$scratch/secretsync.conf" \
        --lock-file "$scratch/lock" "$@") || echo "(exit status $?)"
    echo
}
echo "scratch copy: $scratch"
echo
run --dry-run
run
run --check
run backups
echo "\$ ls -l $scratch/opt/es-inventory-hub/.env"
ls -l "$scratch/opt/es-inventory-hub/.env"
echo "\$ diff <backup> <target>   (only added lines; values shown because they are made up)"
diff "$scratch"/backups/es-inventory-hub/*.env "$scratch/opt/es-inventory-hub/.env" || true
echo
echo "The scratch copy stays for you to look at; remove it with: rm -r $scratch"
