#!/usr/bin/env python3
"""Two slixmpp clients against Parley: subscribe both ways, see presence, chat.

Prints one JSON object with what each client observed; the TypeScript test
asserts on it. Usage: slixmpp_pair.py HOST PORT ALICE BOB PASSWORD
"""
import asyncio
import json
import ssl
import sys

import slixmpp

HOST, PORT, ALICE, BOB, PASSWORD = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]


class Client(slixmpp.ClientXMPP):
    def __init__(self, jid):
        super().__init__(jid, PASSWORD)
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        self.register_plugin('xep_0030')
        self.register_plugin('xep_0199')
        self.messages = []
        self.available = set()
        self.ready = asyncio.Event()
        self.add_event_handler('session_start', self.start)
        self.add_event_handler('message', lambda m: self.messages.append({'from': str(m['from']), 'body': m['body'], 'type': m['type']}))
        self.add_event_handler('got_online', lambda p: p['from'].bare != self.boundjid.bare and self.available.add(p['from'].bare))
        self.roster.auto_authorize = True
        self.roster.auto_subscribe = True

    async def start(self, _):
        await self.get_roster()
        self.send_presence()
        self.ready.set()


async def main():
    alice, bob = Client(ALICE), Client(BOB)
    for c in (alice, bob):
        c.connect((HOST, PORT))
    await asyncio.wait_for(asyncio.gather(alice.ready.wait(), bob.ready.wait()), 20)
    alice.send_presence_subscription(pto=BOB)
    for _ in range(100):
        if BOB in alice.available and ALICE in bob.available:
            break
        await asyncio.sleep(0.1)
    alice.send_message(mto=BOB, mbody='hello from slixmpp', mtype='chat')
    for _ in range(50):
        if bob.messages:
            break
        await asyncio.sleep(0.1)
    bob.send_message(mto=ALICE, mbody='hello back', mtype='chat')
    for _ in range(50):
        if alice.messages:
            break
        await asyncio.sleep(0.1)
    info = await alice['xep_0030'].get_info(jid=ALICE.split('@')[1], timeout=10)
    features = list(info['disco_info']['features'])
    rtt = await alice['xep_0199'].ping(jid=ALICE.split('@')[1], timeout=10)
    result = {
        'alice': {'available': sorted(alice.available), 'messages': alice.messages,
                  'roster': {k: alice.client_roster[k]['subscription'] for k in alice.client_roster}},
        'bob': {'available': sorted(bob.available), 'messages': bob.messages,
                'roster': {k: bob.client_roster[k]['subscription'] for k in bob.client_roster}},
        'features': features,
        'ping': rtt is not None,
    }
    print(json.dumps(result))
    for c in (alice, bob):
        c.disconnect()
    await asyncio.sleep(0.3)


asyncio.run(main())
