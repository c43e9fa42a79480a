#!/usr/bin/env python3
"""slixmpp's own XEP-0198, XEP-0280 and XEP-0313 against Parley.

A phone and a laptop of one account and a friend: carbons on both of the
account's resources, the phone's connection cut and its session resumed, the
laptop paging the archive. Prints one JSON object with what each client saw.
Usage: slixmpp_mobile.py HOST PHONE_PORT LAPTOP_PORT ALICE BOB PASSWORD
"""
import asyncio
import json
import ssl
import sys

import slixmpp
from slixmpp import JID

from slixmpp_support import wait_for

HOST, PPORT, LPORT, ALICE, BOB, PASSWORD = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]


class Client(slixmpp.ClientXMPP):
    def __init__(self, jid):
        super().__init__(jid, PASSWORD)
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        for p in ('xep_0030', 'xep_0059', 'xep_0198', 'xep_0280', 'xep_0297', 'xep_0313'):
            self.register_plugin(p)
        self.bodies = []
        self.carbons = {'sent': [], 'received': []}
        self.ready = asyncio.Event()
        self.resumed = asyncio.Event()
        self.gone = asyncio.Event()
        self.add_event_handler('session_start', self.start)
        self.add_event_handler('session_resumed', lambda _: self.resumed.set())
        self.add_event_handler('disconnected', lambda _: self.gone.set())
        self.add_event_handler('message', lambda m: m['body'] and self.bodies.append(m['body']))
        self.add_event_handler('carbon_received', lambda m: self.carbons['received'].append(m['carbon_received']['body']))
        self.add_event_handler('carbon_sent', lambda m: self.carbons['sent'].append(m['carbon_sent']['body']))

    async def start(self, _):
        await self.get_roster()
        self.send_presence()
        self.ready.set()



async def main():
    phone, laptop, bob = Client(ALICE + '/phone'), Client(ALICE + '/laptop'), Client(BOB + '/desk')
    phone.connect((HOST, PPORT))
    laptop.connect((HOST, LPORT))
    bob.connect((HOST, PPORT))
    await asyncio.wait_for(asyncio.gather(phone.ready.wait(), laptop.ready.wait(), bob.ready.wait()), 20)
    await phone['xep_0280'].enable()
    await laptop['xep_0280'].enable()
    out = {'sm_enabled': bool(phone['xep_0198'].sm_id) and phone['xep_0198'].enabled_out}

    bob.send_message(mto=ALICE + '/phone', mbody='to phone', mtype='chat')
    phone.send_message(mto=BOB, mbody='from phone', mtype='chat')
    await wait_for(lambda: laptop.carbons['received'] and laptop.carbons['sent'])
    out['laptop_carbons'] = {k: list(v) for k, v in laptop.carbons.items()}

    # The phone loses its network; the friend writes meanwhile; the phone comes back and resumes.
    phone.transport.abort()
    await asyncio.wait_for(phone.gone.wait(), 10)
    for i in range(3):
        bob.send_message(mto=ALICE + '/phone', mbody=f'away {i}', mtype='chat')
    await asyncio.sleep(0.5)
    phone.connect((HOST, LPORT))
    await asyncio.wait_for(phone.resumed.wait(), 15)
    out['resumed'] = True
    await wait_for(lambda: 'away 2' in phone.bodies)
    out['phone_bodies'] = phone.bodies

    for i in range(5):
        bob.send_message(mto=ALICE + '/laptop', mbody=f'kept {i}', mtype='chat')
    await wait_for(lambda: 'kept 4' in laptop.bodies)
    archived = []
    async for m in laptop['xep_0313'].iterate(with_jid=JID(BOB), rsm={'max': 3}):
        archived.append(m['mam_result']['forwarded']['stanza']['body'])
    out['archive'] = archived

    for c in (phone, laptop, bob):
        c.disconnect()
    print(json.dumps(out))


asyncio.run(main())
