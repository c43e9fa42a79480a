#!/usr/bin/env python3
"""slixmpp's own XEP-0198 when it closes its stream with messages it has not acknowledged.

slixmpp's disconnect() sends </stream:stream> without an <a/> first, then still answers the server's <r/>.
Alice (stream management on) receives messages from Bob and disconnects; prints one JSON object with what she got.
Usage: slixmpp_close.py HOST PORT ALICE BOB PASSWORD COUNT
"""
import asyncio
import json
import ssl
import sys
import time

import slixmpp

from slixmpp_support import wait_for

HOST, PORT, ALICE, BOB, PASSWORD, COUNT = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6])


class Client(slixmpp.ClientXMPP):
    def __init__(self, jid, sm):
        # PLAIN inside TLS: what is under test is the stream's end, not the choice of SASL mechanism.
        super().__init__(jid, PASSWORD, plugin_config={'feature_mechanisms': {'use_mech': 'PLAIN'}})
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        if sm:
            self.register_plugin('xep_0198')
        self.bodies = []
        self.ready = asyncio.Event()
        self.gone = asyncio.Event()
        self.add_event_handler('session_start', self.start)
        self.add_event_handler('disconnected', lambda _: self.gone.set())
        self.add_event_handler('message', lambda m: m['body'] and self.bodies.append(m['body']))

    async def start(self, _):
        self.send_presence()
        self.ready.set()


async def main():
    alice, bob = Client(ALICE + '/phone', True), Client(BOB + '/desk', False)
    alice.connect((HOST, PORT))
    bob.connect((HOST, PORT))
    await asyncio.wait_for(asyncio.gather(alice.ready.wait(), bob.ready.wait()), 20)
    await wait_for(lambda: alice['xep_0198'].enabled_in)
    for i in range(COUNT):
        bob.send_message(mto=ALICE + '/phone', mbody=f'close {i}', mtype='chat', mfrom=None)
    await wait_for(lambda: len(alice.bodies) >= COUNT)
    out = {'sm': bool(alice['xep_0198'].enabled_in), 'bodies': list(alice.bodies), 'handled': alice['xep_0198'].handled}
    t0 = time.monotonic()
    alice.disconnect(wait=5)
    await asyncio.wait_for(alice.gone.wait(), 10)
    out['closeSeconds'] = round(time.monotonic() - t0, 3)
    bob.disconnect()
    await asyncio.wait_for(bob.gone.wait(), 10)
    print(json.dumps(out))


asyncio.run(main())
