"""`facefuse phone`: serve the on-device web app over HTTPS, or write its static bundle."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import BackendError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("phone", help="serve the offline phone app over HTTPS (https://"
                       "localhost:8443; --host 0.0.0.0 for a phone on this Wi-Fi)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0 "
                   "lets a phone on the same network in)")
    p.add_argument("--port", type=int, default=8443)
    p.add_argument("--build", metavar="DIR", default=None,
                   help="write the static bundle for any HTTPS host into DIR and exit")
    p.set_defaults(func=cmd_phone)


def _qr(url: str) -> str:
    """The URL as a QR code drawn with half blocks (light on dark), for a phone camera."""
    import io

    import segno

    out = io.StringIO()
    segno.make(url, error="m", micro=False).terminal(out=out, compact=True, border=2)
    return out.getvalue()


def cmd_phone(args: argparse.Namespace) -> int:
    try:
        from ..phone import certs, server
    except ImportError as exc:
        raise BackendError(f"facefuse phone needs cryptography and segno: pip install -e . "
                           f"({exc})") from None
    if args.build:
        written = server.build_bundle(Path(args.build))
        size = sum(written.values())
        print(f"wrote {len(written)} files, {size / 1e6:.1f} MB, to {Path(args.build).resolve()}")
        print("serve that folder from any HTTPS host; see docs/phone.md")
        return 0
    authority = certs.ensure_authority()
    site = server.make_server(args.host, args.port, authority)
    port = site.port
    loopback = args.host in ("127.0.0.1", "::1", "localhost")
    if args.host in ("0.0.0.0", "::"):
        hosts = certs.lan_addresses()
        if not hosts:
            print("note: no private LAN address (10.x, 172.16-31.x, 192.168.x) found on this "
                  "machine; a phone cannot reach or trust it here", file=sys.stderr)
            hosts = ["localhost"]
    else:
        hosts = ["localhost" if loopback else args.host]
    urls = [f"https://{h if ':' not in h else f'[{h}]'}:{port}/" for h in hosts]
    print(f"facefuse phone app: {urls[0]}")
    for extra in urls[1:]:
        print(f"                    {extra}")
    if loopback:
        print("only this machine can reach it; for a phone on this Wi-Fi: --host 0.0.0.0")
    print(_qr(urls[0]), end="")
    print(f"first time on a phone: open {urls[0]}ca.html and install the certificate")
    print(f"  (CA {authority.cert_path}, SHA-256 {authority.fingerprint})")
    for h in hosts:
        if not certs.is_local(h):
            print(f"note: {h} is not a private LAN address; phones will not trust it",
                  file=sys.stderr)
    print("nothing is uploaded: the fusion runs in the phone's browser. Ctrl-C stops.",
          flush=True)
    try:
        site.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        site.server_close()
    return 0
