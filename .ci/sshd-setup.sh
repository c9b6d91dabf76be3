#!/usr/bin/env bash
# A "remote host" on this machine for tests/test_hosts_ssh.py (issue 19): the account `caoremote`,
# a key pair made for the tests, and an sshd of our own on 127.0.0.1:$CAO_TEST_SSHD_PORT (its own
# config, host key and pid file under /etc/cao-test-sshd). Idempotent; run as root; no stdin.
# A third account, `caonotmux`, has a PATH without tmux (what `hosts check` must report).
set -euo pipefail
PORT="${CAO_TEST_SSHD_PORT:-2222}"
DIR=/etc/cao-test-sshd
command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ] || {
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server </dev/null >/dev/null
}
mkdir -p "$DIR" /run/sshd
chmod 755 "$DIR"
[ -f "$DIR/host_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -f "$DIR/host_ed25519" </dev/null
# The client key: readable by the test runner (root here; any user running the tests in CI).
[ -f "$DIR/client_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -f "$DIR/client_ed25519" </dev/null
chmod 600 "$DIR/client_ed25519"
for user in caoremote caonotmux; do
  id "$user" >/dev/null 2>&1 || useradd -m -s /bin/bash "$user"
  usermod -p "*" "$user"  # no password, not locked (sshd without PAM refuses locked accounts)
  home=$(getent passwd "$user" | cut -d: -f6)
  install -d -m 700 -o "$user" -g "$user" "$home/.ssh"
  install -m 600 -o "$user" -g "$user" "$DIR/client_ed25519.pub" "$home/.ssh/authorized_keys"
done
# caonotmux: a login shell whose PATH has python3 but no tmux.
notmux_home=$(getent passwd caonotmux | cut -d: -f6)
install -d -m 755 -o caonotmux -g caonotmux "$notmux_home/bin"
ln -sf /usr/bin/python3 "$notmux_home/bin/python3"
cat > "$DIR/sshd_config" <<CONF
Port $PORT
ListenAddress 127.0.0.1
HostKey $DIR/host_ed25519
PidFile $DIR/sshd.pid
AuthorizedKeysFile .ssh/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin no
AllowUsers caoremote caonotmux
MaxSessions 10
Subsystem sftp internal-sftp
Match User caonotmux
  SetEnv PATH=$notmux_home/bin:/bin/nosuchdir
CONF
if [ -f "$DIR/sshd.pid" ] && kill -0 "$(cat "$DIR/sshd.pid")" 2>/dev/null; then
  kill -HUP "$(cat "$DIR/sshd.pid")"  # re-read the config
else
  /usr/sbin/sshd -f "$DIR/sshd_config"
fi
echo "test sshd on 127.0.0.1:$PORT (key $DIR/client_ed25519)"
