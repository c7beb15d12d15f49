#!/bin/busybox sh
# The stand-in Windows: /init of a busybox initramfs, booted from the stand-in install ISO
# (osbuild=setup) or from the disk it installed (osbuild=disk). It does what the orchestrator
# sees of Windows Setup (tests/support/standin_windows.py has the whole picture):
#   setup:  find the config ISO by its label, print the answer file's windowsPE markers,
#           write the installed system to the target disk (GPT with an ESP under UEFI,
#           MBR under BIOS, as Windows Setup does), reboot;
#   disk, state "installed":   specialize markers, first-logon driver markers for the
#           plan's stages, sysprep:start, mark the disk generalized, hold the declared
#           time, sysprep:ok, power off 1 s later;
#   disk, state "generalized": the deployed image: cloudbase-init's lines, then idle.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1

# Where the install state lives: past the partition tables, before the first partition.
STATE_SECTOR=@STATE_SECTOR@
# The guest's pace: the tests run osbuild this many times faster than real time, so the
# declared sysprep hold (osbuild.markers.SYSPREP_HOLD, rendered into firstlogon.ps1) is
# held for hold / PACE real seconds.
PACE=@PACE@
POWEROFF_DELAY=1
MODE=$(sed -n 's/.*osbuild=\([a-z]*\).*/\1/p' /proc/cmdline)

for m in $(cat /modules.order); do insmod "/lib/modules/$m" 2>/dev/null; done

say() { echo "standin: $*"; }

# The firmware this boot runs under, as Windows' msinfo32 shows it: BIOS, or UEFI with the
# SecureBoot variable's value (efivarfs: 4 attribute bytes, then the value).
firmware() {
    if [ ! -d /sys/firmware/efi ]; then echo BIOS; return; fi
    mount -t efivarfs efivarfs /sys/firmware/efi/efivars 2>/dev/null
    var=/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c
    if [ -f "$var" ]; then
        echo "UEFI, SecureBoot=$(dd if="$var" bs=1 skip=4 count=1 2>/dev/null | od -An -tu1 | tr -d ' ')"
    else
        echo "UEFI, SecureBoot unsupported"
    fi
}

iso_label() {
    dd if="$1" bs=2048 skip=16 count=1 2>/dev/null | dd bs=1 skip=40 count=32 2>/dev/null | tr -d ' \0'
}

disks() {
    for d in /dev/vd? /dev/sd? /dev/hd?; do [ -b "$d" ] && echo "$d"; done
}

disk_state() {
    dd if="$1" bs=512 skip=$STATE_SECTOR count=1 2>/dev/null | head -c 64 | sed -n 's/^OSBSTATE \([a-z]*\).*/\1/p'
}

set_state() {
    printf 'OSBSTATE %s\n' "$2" | dd of="$1" bs=512 seek=$STATE_SECTOR conv=notrunc,fsync 2>/dev/null
    sync
}

power_off() {
    sync
    say "powering off"
    poweroff -f
    sleep 600
}

halt_here() {
    # Windows Setup stops with a dialog on the screen and nothing on the serial port.
    say "$*"
    while true; do sleep 3600; done
}

# The devices settle a moment after their drivers load.
i=0
while [ $i -lt 20 ]; do
    ls /dev/sr? /dev/vd? /dev/sd? >/dev/null 2>&1 && break
    sleep 0.5; i=$((i + 1))
done
sleep 1

find_config() {
    for d in /dev/sr?; do
        [ -b "$d" ] || continue
        if [ "$(iso_label "$d")" = "OSBUILD_CONFIG" ]; then echo "$d"; return; fi
    done
}

mount_config() {
    CONFIG=$(find_config)
    [ -n "$CONFIG" ] || halt_here "no config ISO (label OSBUILD_CONFIG) among the cdroms"
    mkdir -p /config
    mount -t iso9660 -o ro "$CONFIG" /config || halt_here "cannot mount $CONFIG"
    NONCE=$(tr -d '\r\n ' </config/osbuild/nonce.txt)
    say "config ISO on $CONFIG"
}

mark() {
    if [ -n "$3" ]; then echo "OSBUILD:$NONCE:$1:$2:$3"; else echo "OSBUILD:$NONCE:$1:$2"; fi
}

# The markers the answer file's commands of one pass write, in order (cmd's echo lines).
pass_markers() {
    awk -v pass="$1" '
        index($0, "<settings pass=\"" pass "\"") { on = 1 }
        on && index($0, "</settings>") { on = 0 }
        on { print }' /config/autounattend.xml |
        grep -o 'OSBUILD:[^:]*:[a-z][a-z0-9_-]*:\(start\|ok\|fail\|info\)' |
        while IFS=: read -r _ _ stage status; do mark "$stage" "$status"; done
}

plan_value() {
    sed -n "s/.*\"$1\": \"\([^\"]*\)\".*/\1/p" /config/osbuild/plan.json | head -n 1
}

plan_list() {
    awk -v key="\"$1\": [" 'index($0, key) { if (index($0, "[]") == 0) on = 1; next } on && /\]/ { on = 0 } on { gsub(/[ ",]/, ""); print }' \
        /config/osbuild/plan.json
}

say "firmware $(firmware)"
case "$MODE" in
setup)
    say "Windows Setup (stand-in) started"
    mount_config
    pass_markers windowsPE
    EDITION=$(plan_value image_name)
    grep -q "<Value>$EDITION</Value>" /config/autounattend.xml ||
        halt_here "the answer file does not select $EDITION"
    mkdir -p /media
    for d in /dev/sr?; do
        [ "$d" = "$CONFIG" ] && continue
        mount -t iso9660 -o ro "$d" /media 2>/dev/null || continue
        [ -f /media/standin/disk.img ] && { MEDIA=$d; break; }
        umount /media
    done
    [ -n "$MEDIA" ] || halt_here "the install media is not among the cdroms"
    TARGET=$(disks | head -n 1)
    [ -n "$TARGET" ] || halt_here "We couldn't find any drives"
    LAYOUT=disk.img
    [ -d /sys/firmware/efi ] && LAYOUT=disk-gpt.img
    say "applying $EDITION from $MEDIA to $TARGET ($LAYOUT)"
    dd if="/media/standin/$LAYOUT" of="$TARGET" bs=1M conv=notrunc,fsync 2>/dev/null
    set_state "$TARGET" installed
    umount /media
    say "Setup is restarting the computer"
    sync
    reboot -f
    ;;
disk)
    for d in $(disks); do
        state=$(disk_state "$d")
        [ -n "$state" ] && { SYSTEM=$d; break; }
    done
    [ -n "$SYSTEM" ] || halt_here "no installed system found"
    case "$state" in
    installed)
        say "Windows (stand-in) boots from $SYSTEM"
        mount_config
        pass_markers specialize
        mark firstlogon start "$(plan_value build_id)"
        mark firstlogon ok
        for stage in $(plan_list stages); do
            mark "$stage" start
            if [ "$stage" = sysprep ]; then
                # The power-off protocol (osbuild/markers.py): hold after sysprep:start,
                # then the final marker, then power off 1 s later (the worst timing).
                set_state "$SYSTEM" generalized
                hold=$(sed -n 's/.*\$left = \([0-9]*\).*/\1/p' /config/osbuild/scripts/firstlogon.ps1 | head -n 1)
                sleep $(( ${hold:-0} / PACE ))
                mark sysprep ok
                sleep "$POWEROFF_DELAY"
                power_off
            fi
            if [ "$stage" = scripts ]; then
                # A user script that says "standin-fail: <reason>" fails the way a script
                # that exits non-zero does under the first-logon driver.
                for script in $(plan_list scripts); do
                    reason=$(sed -n 's/.*standin-fail: *//p' "/config/$script" | head -n 1 | tr -d '\r')
                    if [ -n "$reason" ]; then
                        mark scripts fail "${script##*/}: $reason"
                        halt_here "script $script failed"
                    fi
                done
            fi
            mark "$stage" ok
        done
        halt_here "the plan has no sysprep stage"
        ;;
    generalized)
        say "Windows (stand-in, deployed image) boots from $SYSTEM"
        echo "cloudbaseinit.init INFO Metadata service loaded: 'ConfigDriveService'"
        echo "cloudbaseinit.init INFO Plugins execution done"
        while true; do sleep 3600; done
        ;;
    esac
    ;;
esac
halt_here "unknown mode '$MODE'"
