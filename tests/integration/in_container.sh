#!/bin/sh
# Runs inside the booted container (as runner.service): installs secretsync.deb and exercises
# it the way an administrator would. Every step's stdout, stderr and exit status land in
# /out/STEP.out, /out/STEP.err and /out/STEP.rc; test_deb_systemd.py asserts on them. A
# failing step does not stop the script: later steps still run and show what they can.
#
# Inputs: /debs/secretsync.deb and /debs/secretsync-upgrade.deb (a higher version of it), and
# /debs/sentinels (one line each: the old target value, the new source value, a value the
# preserved key keeps, all made up so that they can be searched for in the journal).

set -u
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 SYSTEMD_PAGER= PAGER=cat
OUT=/out

step() {
    name=$1
    shift
    "$@" >"$OUT/$name.out" 2>"$OUT/$name.err"
    echo $? >"$OUT/$name.rc"
}

# Steps that are shell snippets, not a single command.
shstep() {
    name=$1
    shift
    step "$name" sh -c "$*"
}

step system-running systemctl is-system-running --wait

# The package files go where apt's unprivileged downloader can read them.
mkdir -p /srv/debs && cp /debs/*.deb /srv/debs/ && chmod -R a+rX /srv/debs
{ read -r OLD_TOKEN; read -r NEW_TOKEN; read -r LOCAL_URL; } </debs/sentinels

# 1. Install from a file, dependencies from the archive.
shstep deps-before "dpkg-query -W -f='\${Package} \${Status}\n' python3 python3-dotenv \
    python3-systemd 2>&1; true"
step apt-update apt-get update
shstep install "cd /srv/debs && apt-get install -y ./secretsync.deb"
shstep deps-after "dpkg-query -W -f='\${Package} \${Version} \${Status}\n' secretsync \
    python3-dotenv python3-systemd"
step version /usr/sbin/secretsync --version

# 2. The units.
step timer-enabled systemctl is-enabled secretsync.timer
step timer-active systemctl is-active secretsync.timer
step timer-calendar systemctl show --property=TimersCalendar --value secretsync.timer
step calendar systemd-analyze calendar '*-*-* 03:00:00 America/Chicago'
step service-enabled systemctl is-enabled secretsync.service
step service-active systemctl is-active secretsync.service
step verify systemd-analyze verify secretsync.service secretsync.timer
step service-sandbox systemctl show --property=ProtectSystem,ProtectHome,PrivateNetwork,User,RuntimeDirectory,RuntimeDirectoryPreserve secretsync.service

# 3. Files the package set up.
step backup-dir stat -c '%a %U %G' /var/backups/secretsync
step config-stat stat -c '%a %U %G' /etc/secretsync.conf
shstep config-sections "grep -c '^\[' /etc/secretsync.conf; true"
step man-path man -w secretsync secretsync.conf
shstep man8 "MANWIDTH=80 man secretsync | head -n 40"
shstep man5 "MANWIDTH=80 man secretsync.conf | head -n 40"
step sandbox-score systemd-analyze security --no-pager secretsync.service

# The service on a fresh install (no job yet) must succeed: that is what the first nightly
# run does.
step start-empty systemctl start secretsync.service
step start-empty-result systemctl show --property=Result --value secretsync.service

# 4. A job: a shared secrets file, an application's .env owned by its system user, 0640, and
# an application service that the job's hook restarts.
shstep setup "
set -e
useradd --system --user-group --home-dir /opt/app --no-create-home --shell /usr/sbin/nologin appsvc
install -d -m 0700 /opt/shared-secrets
install -d -m 0750 -o appsvc -g appsvc /opt/app
umask 077
cat >/opt/shared-secrets/api-secrets.env <<EOF
# shared secrets
APP_TOKEN=$NEW_TOKEN
APP_NEW_KEY=added-$NEW_TOKEN
APP_LOCAL_URL=https://shared.invalid/$NEW_TOKEN
OTHER_SECRET=unrelated-$NEW_TOKEN
EOF
cat >/opt/app/.env <<EOF
# the application's own settings
DB_DSN=postgresql:///app
APP_TOKEN=$OLD_TOKEN
APP_LOCAL_URL=$LOCAL_URL
LOG_LEVEL=info
EOF
chown appsvc:appsvc /opt/app/.env
chmod 0640 /opt/app/.env
cat >/etc/systemd/system/app.service <<EOF
[Unit]
Description=stand-in application
[Service]
User=appsvc
ExecStart=/bin/sleep infinity
EOF
cat >>/etc/secretsync.conf <<EOF

# added by the integration test
[app]
source = /opt/shared-secrets/api-secrets.env
target = /opt/app/.env
sync = APP_*
preserve = APP_LOCAL_URL
on_change = systemctl try-restart app.service
EOF
systemctl daemon-reload
systemctl start app.service
"
step config-sha-edited sha256sum /etc/secretsync.conf
step target-before-sha sha256sum /opt/app/.env
step app-before systemctl show --property=InvocationID --value app.service
step dropin systemctl cat secretsync.service
step start systemctl start secretsync.service
step start-result systemctl show --property=Result,ExecMainStatus secretsync.service
step status systemctl status --no-pager --lines=20 secretsync.service
step app-after systemctl show --property=InvocationID,ActiveState app.service
step target-stat stat -c '%a %U %G' /opt/app/.env
step target cat /opt/app/.env
step backups-list find /var/backups/secretsync -printf '%y %m %u %p\n'
shstep backup-content 'cat /var/backups/secretsync/app/*'
shstep journal-sync "journalctl --sync"
step journal-secretsync journalctl --no-pager -t secretsync -o json

# 5. Dry runs: as root it reports a newly added key and writes nothing; as an unprivileged
# user it cannot read the source and says so in one line.
shstep source-add "echo 'APP_LATER=later-$NEW_TOKEN' >>/opt/shared-secrets/api-secrets.env"
step target-sha-before-dry sha256sum /opt/app/.env
step dry-run-root secretsync --dry-run
step target-sha-after-dry sha256sum /opt/app/.env
step dry-run-user runuser -u nobody -- secretsync --dry-run
step check-root secretsync --check

# The sandbox follows the configuration at daemon-reload. A job added without one may not
# write its directory (here one with a space in its name, which the drop-in must quote): it
# fails, and the service with it, the other job still runs, and the service warns. After a
# daemon-reload the job runs.
shstep stale-setup "
set -e
install -d -m 0755 \"/srv/app 2\"
umask 077
echo 'APP_TOKEN=$OLD_TOKEN' >\"/srv/app 2/.env\"
cat >/etc/secretsync.d/app2.conf <<EOF
[app2]
source = /opt/shared-secrets/api-secrets.env
target = /srv/app 2/.env
sync = APP_TOKEN
EOF
"
step stale-start systemctl start secretsync.service
step stale-target sha256sum "/srv/app 2/.env"
step reload systemctl daemon-reload
step reloaded-start systemctl start secretsync.service
step reloaded-target cat "/srv/app 2/.env"
shstep stale-cleanup "rm /etc/secretsync.d/app2.conf && systemctl daemon-reload"
shstep journal-sync-late "journalctl --sync"
step journal-late journalctl --no-pager -o json -t secretsync -t secretsync-generator
step journal-all journalctl --no-pager -b -o export

# 6. The admin's edit survives a reinstall and an upgrade; remove stops the timer; purge
# removes the configuration and keeps the backups.
shstep reinstall "cd /srv/debs && apt-get install -y --reinstall ./secretsync.deb"
step config-sha-reinstall sha256sum /etc/secretsync.conf
shstep upgrade "cd /srv/debs && apt-get install -y ./secretsync-upgrade.deb"
shstep upgraded-version "dpkg-query -W -f='\${Version}' secretsync"
step config-sha-upgrade sha256sum /etc/secretsync.conf
step timer-active-upgrade systemctl is-active secretsync.timer
step timer-enabled-upgrade systemctl is-enabled secretsync.timer
step backup-dir-upgrade stat -c '%a %U %G' /var/backups/secretsync

step remove apt-get remove -y secretsync
step timer-active-removed systemctl is-active secretsync.timer
step timer-enabled-removed systemctl is-enabled secretsync.timer
step timer-list-removed systemctl list-timers --all --no-legend secretsync.timer
shstep config-after-remove "ls /etc/secretsync.conf"
step purge apt-get purge -y secretsync
shstep after-purge "ls -d /etc/secretsync.conf /etc/secretsync.d /usr/sbin/secretsync \
    /etc/systemd/system/timers.target.wants/secretsync.timer 2>&1; true"
step backups-after-purge find /var/backups/secretsync -type f -printf '%m %p\n'
shstep purged-status "dpkg-query -W -f='\${Status}' secretsync 2>&1; true"
step timer-active-purged systemctl is-active secretsync.timer

# Diagnostics for a failure: the whole journal, readable.
journalctl --no-pager -b >"$OUT/journal.txt" 2>&1
echo done >"$OUT/done"
systemctl exit 0
