"""testinfra checks of the heal_timer role on a machine without systemd: the cron entry, the
tick wrapper (runs the playbook under a lock, logs) and the watcher process."""

from __future__ import annotations

WRAPPER = "/var/lib/hapool/heal/hapool-heal-tick.sh"
LOG = "/var/lib/hapool/heal/hapool-heal.log"


def test_cron_entry_runs_the_wrapper_every_minute(host):
    cron = host.file("/etc/cron.d/hapool-heal")
    assert cron.exists and cron.user == "root"
    lines = [line for line in cron.content_string.splitlines() if line and not line.startswith("#")]
    assert lines == [f"* * * * * root {WRAPPER} >/dev/null 2>&1"], lines


def test_wrapper_runs_three_ticks_a_minute_under_a_lock(host):
    wrapper = host.file(WRAPPER)
    assert wrapper.mode == 0o750 and wrapper.user == "root"
    text = wrapper.content_string
    assert "3 tick(s) 20 s apart" in text
    assert 'flock -n -E 75 "$LOCK"' in text
    assert host.run(f"sh -n {WRAPPER}").rc == 0


def test_a_tick_runs_the_playbook_and_logs(host):
    assert host.run(f"{WRAPPER} once").rc == 0
    log = host.file(LOG).content_string
    assert "heal run (tick once" in log
    assert "stand-in ansible-playbook -i /opt/hapool/inventories/local /opt/hapool/playbooks/heal.yml" in log
    assert "heal run exited 0" in log


def test_the_watcher_runs_as_a_process(host):
    pid = host.file("/var/lib/hapool/heal/hapool-heal-watch.pid").content_string.strip()
    cmdline = host.file(f"/proc/{pid}/cmdline").content_string.replace("\0", " ")
    watcher = "/var/lib/hapool/heal/hapool-heal-watch.py --socket /run/haproxy/admin.sock"
    assert f"/usr/bin/python3 {watcher}" in cmdline
    assert f"{WRAPPER} once" in cmdline
    # No balancer in this container: the watcher says so and keeps polling.
    assert "cannot read the stats socket" in host.file(LOG).content_string
