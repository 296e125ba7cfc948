#!/usr/bin/env python3
"""Another service, in another language, talking to Sanctum.

Uses its own CURVE key (in the allow-list as ext:erp-gateway), sends an
`echo` request to a service, prints the reply, and prints the events the
request caused as they arrive on the service's PUB socket.

    inject_demo.py KEYS_DIR RPC_ENDPOINT PUB_ENDPOINT [SERVICE]
"""
import json
import sys
import time

import sanctum_client as sc


def main():
    keys, rpc, pub = sys.argv[1:4]
    service = sys.argv[4] if len(sys.argv) > 4 else "orchestrator"
    public, secret = sc.load_keys(keys, "erp-gateway")
    server = sc.server_key(keys, service)
    sub = sc.SanctumSubscriber(pub, server, public, secret)
    time.sleep(0.3)
    client = sc.SanctumClient(rpc, server, public, secret)
    reply = client.call("echo", {"data": {"from_python": True, "po": "PO-1042"}})
    print("reply from %s:" % service)
    print(json.dumps(reply, indent=2, sort_keys=True))
    evt = sub.recv(2000)
    while evt is not None:
        if evt.get("body", {}).get("request") == (reply or {}).get("corr"):
            print("event it caused:")
            print(json.dumps(evt, indent=2, sort_keys=True))
            break
        evt = sub.recv(2000)
    client.close()
    sub.close()
    return 0 if reply and reply.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
