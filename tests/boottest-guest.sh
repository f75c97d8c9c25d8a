#!/bin/bash
# Runs inside the emulated camera (scripts/boot-test adds it to ITS copy of the image, never to a
# real image) as bodycam-boottest.service, after first boot and bodycam.service. Prints one line per
# check to the console (the host reads the serial port): "BOOTTEST pass|fail NAME detail", then
# "BOOTTEST end BOOT" and powers the machine off. The first boot leaves a stamp so the second
# power-on checks what must hold on every later boot.
set -u
export PATH=/opt/bodycam/venv/bin:/usr/sbin:/usr/bin:/sbin:/bin GPIOZERO_PIN_FACTORY=mock
CONFIG=/etc/bodycam/device.toml
STAMP=/var/lib/bodycam-boottest/boot1
say() { echo "BOOTTEST $*"; }
check() {  # check NAME DETAIL CMD...: pass if CMD succeeds
    local name=$1 detail=$2; shift 2
    if "$@"; then say "pass $name $detail"; else say "fail $name $detail"; fi
}
as_bodycam() { runuser -u bodycam -- "$@"; }
prop() { systemctl show -p "$2" --value "$1"; }

wait_active() {  # wait_active SECONDS: bodycam.service active and answering on its socket
    local i
    for ((i = 0; i < $1; i++)); do
        if [ "$(systemctl is-active bodycam)" = active ] && as_bodycam bodycam status --config $CONFIG >/dev/null 2>&1; then
            return 0
        fi
        sleep 1
    done
    return 1
}

daemon_state() { as_bodycam bodycam status --config $CONFIG 2>&1 | tr '\n' ' ' | cut -c1-160; }

if [ ! -e $STAMP ]; then
    say "info boot 1 (first boot)"
    fb_start=$(prop bodycam-firstboot ExecMainStartTimestampMonotonic)
    fb_end=$(prop bodycam-firstboot ExecMainExitTimestampMonotonic)
    check firstboot "result=$(prop bodycam-firstboot Result), took $(((fb_end - fb_start) / 1000000)) s" \
        test -e /var/lib/bodycam-firstboot/done -a "$(prop bodycam-firstboot Result)" = success
    key=$(stat -c '%a %U' /var/lib/bodycam/device/key.pem 2>&1)
    check device-key "key.pem: $key" test "$key" = "600 bodycam"
    if wait_active 120; then
        say "pass service bodycam.service active, restarts $(prop bodycam NRestarts); $(daemon_state)"
    else
        say "fail service bodycam.service $(systemctl is-active bodycam), restarts $(prop bodycam NRestarts)"
        journalctl -b -u bodycam -n 15 -o cat | sed 's/^/BOOTTEST info journal: /'
    fi

    pid=$(prop bodycam MainPID); n0=$(prop bodycam NRestarts); t0=$(date +%s)
    kill -STOP "$pid"
    back=no
    for ((i = 0; i < 90; i++)); do
        sleep 1
        now=$(prop bodycam MainPID)
        if [ "$now" != 0 ] && [ "$now" != "$pid" ] && wait_active 1; then back=yes; break; fi
    done
    check watchdog "stopped PID $pid; back as PID $(prop bodycam MainPID) after $(($(date +%s) - t0)) s, restarts $n0 -> $(prop bodycam NRestarts)" \
        test $back = yes

    systemctl stop bodycam
    rec=$(as_bodycam bodycam record --config $CONFIG --wait 2 --seconds 3 2>&1 | tail -n 2 | tr '\n' ' ')
    ver=$(as_bodycam bodycam verify /var/lib/bodycam 2>&1)
    vrc=$?
    check record-verify "$rec| $(echo "$ver" | tail -n 1)" test $vrc = 0 -a -n "$(ls /var/lib/bodycam/segments 2>/dev/null)"
    systemctl start bodycam
    # As a technician runs it: without the service's mock-pin drop-in, so its pin-factory probe is real.
    env -u GPIOZERO_PIN_FACTORY bodycam doctor 2>&1 | sed 's/^/BOOTTEST info doctor: /'
    mkdir -p "$(dirname $STAMP)" && touch $STAMP && sync
    say "end 1"
else
    say "info boot 2 (later boot)"
    ran=$(journalctl -b -u bodycam-firstboot -o cat | grep -c 'bodycam-firstboot \[' || true)
    check firstboot-skipped "ConditionResult=$(prop bodycam-firstboot ConditionResult), step lines this boot: $ran" \
        test "$(prop bodycam-firstboot ConditionResult)" = no -a "$ran" = 0
    if wait_active 120; then
        say "pass service-after-reboot bodycam.service active; $(daemon_state)"
    else
        say "fail service-after-reboot bodycam.service $(systemctl is-active bodycam)"
    fi
    say "end 2"
fi
systemctl poweroff --no-block
