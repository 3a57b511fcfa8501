#!/usr/bin/python3
"""The BitTorrent side of scripts/race/race.sh: one libtorrent peer.

  lt_peer.py make FILE TORRENT [--piece-kib N]
      Writes a v1 .torrent for FILE (no tracker: peers are given directly).
  lt_peer.py seed TORRENT DIR --ip IP [--ready PATH]
      Seeds the file in DIR (hash-checked at start); touches PATH once seeding.
  lt_peer.py leech TORRENT DIR --ip IP --peers IP,IP,... --done PATH
      Downloads into DIR from the listed peers (the seeder and the other
      leechers) and writes the wall-clock time (seconds since the epoch) at
      which the last piece verified to PATH, then keeps seeding until killed.

Settings for a LAN race where the kernel's tbf does the rate limiting: no
libtorrent rate limits, no DHT / LSD / UPnP / NAT-PMP (every peer is listed),
TCP only (no uTP, as waveguard runs on TCP here), no protocol encryption
(waveguard's Noise encryption is mandatory; BitTorrent's is optional and is
left off so libtorrent is not handicapped by it), unlimited unchoke slots and
room for every peer. Needs the Debian package python3-libtorrent (2.0.x).
"""

import argparse
import os
import sys
import time

try:
    import libtorrent as lt
except ImportError:
    sys.exit("lt_peer.py: the libtorrent Python module is missing; install it with "
             "'apt-get install python3-libtorrent' and run this with /usr/bin/python3")

PORT = 6881


def session(ip):
    pack = {
        "listen_interfaces": f"{ip}:{PORT}",
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_outgoing_utp": False,
        "enable_incoming_utp": False,
        "out_enc_policy": int(lt.enc_policy.disabled),
        "in_enc_policy": int(lt.enc_policy.disabled),
        "upload_rate_limit": 0,
        "download_rate_limit": 0,
        "unchoke_slots_limit": -1,
        "connections_limit": 500,
        "allow_multiple_connections_per_ip": True,
        "alert_mask": int(lt.alert.category_t.status_notification
                          | lt.alert.category_t.error_notification),
    }
    return lt.session(pack)


def add(ses, torrent, directory):
    params = lt.add_torrent_params()
    params.ti = lt.torrent_info(torrent)
    params.save_path = directory
    return ses.add_torrent(params)


def make(args):
    fs = lt.file_storage()
    lt.add_files(fs, args.file)
    ct = lt.create_torrent(fs, args.piece_kib * 1024, flags=lt.create_torrent.v1_only)
    lt.set_piece_hashes(ct, os.path.dirname(os.path.abspath(args.file)))
    with open(args.torrent, "wb") as f:
        f.write(lt.bencode(ct.generate()))
    print(f"{args.torrent}: {ct.num_pieces()} pieces of {ct.piece_length() // 1024} KiB")


def seed(args):
    ses = session(args.ip)
    h = add(ses, args.torrent, args.dir)
    while not h.status().is_seeding:
        if h.status().errc.value():
            sys.exit(f"lt_peer.py: seeder: {h.status().errc.message()}")
        time.sleep(0.1)
    if args.ready:
        open(args.ready, "w").close()
    while True:
        time.sleep(3600)


def leech(args):
    ses = session(args.ip)
    h = add(ses, args.torrent, args.dir)
    for ip in args.peers.split(","):
        if ip and ip != args.ip:
            h.connect_peer((ip, PORT))
    finished = None
    last_connect = time.time()
    while finished is None:
        ses.wait_for_alert(100)
        for a in ses.pop_alerts():
            if isinstance(a, lt.torrent_finished_alert):
                finished = time.time()
            elif isinstance(a, lt.torrent_error_alert):
                sys.exit(f"lt_peer.py: leecher {args.ip}: {a.message()}")
        # A peer that was not listening yet when first dialled is dialled again.
        if finished is None and time.time() - last_connect > 2:
            for ip in args.peers.split(","):
                if ip and ip != args.ip:
                    h.connect_peer((ip, PORT))
            last_connect = time.time()
    st = h.status()
    with open(args.done + ".tmp", "w") as f:
        f.write(f"{finished:.3f} {st.total_payload_download} {st.total_payload_upload}\n")
    os.rename(args.done + ".tmp", args.done)
    # Keep serving the others; report the final upload when stopped.
    while True:
        time.sleep(3600)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("file")
    m.add_argument("torrent")
    m.add_argument("--piece-kib", type=int, default=0, help="piece size in KiB (0: libtorrent's choice)")
    s = sub.add_parser("seed")
    s.add_argument("torrent")
    s.add_argument("dir")
    s.add_argument("--ip", required=True)
    s.add_argument("--ready")
    l = sub.add_parser("leech")
    l.add_argument("torrent")
    l.add_argument("dir")
    l.add_argument("--ip", required=True)
    l.add_argument("--peers", required=True)
    l.add_argument("--done", required=True)
    args = p.parse_args()
    {"make": make, "seed": seed, "leech": leech}[args.cmd](args)


if __name__ == "__main__":
    main()
