#!/usr/bin/env python3
"""A stand-in for systemd's notification socket: binds a unix datagram socket and
appends every message it receives to a file as "<monotonic ms> <message with \\n as |>".
usage: notify_listen.py SOCKET_PATH OUT_FILE SECONDS"""
import os, socket, sys, time

path, out, secs = sys.argv[1], sys.argv[2], float(sys.argv[3])
if os.path.exists(path):
    os.unlink(path)
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
s.settimeout(0.2)
end = time.monotonic() + secs
with open(out, "a", buffering=1) as f:
    while time.monotonic() < end:
        try:
            data = s.recv(4096)
        except socket.timeout:
            continue
        f.write("%d %s\n" % (time.monotonic() * 1000, data.decode(errors="replace").replace("\n", "|")))
