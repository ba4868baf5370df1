"""The receiver's check of a tern webhook's Tern-Signature header, as
services/webhook/README.md documents it. Used by scripts/webhook-receiver and
the tests' receivers; copy it into a receiver of your own.

    Tern-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">
"""
import hashlib
import hmac
import time

REPLAY_WINDOW_S = 300   # services/webhook/signature.h: kReplayWindowS


def verify(secret, header, body, now=None, window_s=REPLAY_WINDOW_S):
    """'valid', 'malformed', 'bad signature' or 'outside the replay window'.

    secret: the webhook's secret (str); header: the Tern-Signature value;
    body: the request body exactly as received (bytes); now: Unix seconds
    (default: this machine's clock)."""
    items = [i.split("=", 1) for i in (header or "").split(",") if "=" in i]
    ts = [v for k, v in items if k == "t"]
    macs = [v for k, v in items if k == "v1"]
    if len(ts) != 1 or not ts[0].isdigit() or not macs:
        return "malformed"
    want = hmac.new(secret.encode(), ts[0].encode() + b"." + body, hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(want, m) for m in macs):
        return "bad signature"
    now = time.time() if now is None else now
    if abs(now - int(ts[0])) > window_s:
        return "outside the replay window"
    return "valid"
