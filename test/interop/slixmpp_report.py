#!/usr/bin/env python3
"""slixmpp's XEP-0191 and XEP-0377 plugins against Parley: a user blocks a
spammer with a spam report (text included), as slixmpp builds it, and reads
the block list back. Prints one JSON object for the TypeScript test.
Usage: slixmpp_report.py HOST PORT USER PASSWORD SPAMMER
"""
import asyncio
import json
import ssl
import sys

import slixmpp
from slixmpp import JID

HOST, PORT, USER, PASSWORD, SPAMMER = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]


class Client(slixmpp.ClientXMPP):
    def __init__(self):
        super().__init__(USER, PASSWORD)
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        for p in ('xep_0030', 'xep_0191', 'xep_0377'):
            self.register_plugin(p)
        self.ready = asyncio.Event()
        self.add_event_handler('session_start', self.start)

    async def start(self, _):
        await self.get_roster()
        self.send_presence()
        self.ready.set()


async def main():
    c = Client()
    c.connect((HOST, PORT))
    await asyncio.wait_for(c.ready.wait(), 20)
    info = await c['xep_0030'].get_info(jid=JID(USER).domain, timeout=10)
    iq = c.make_iq_set()
    iq['block']['items'] = [JID(SPAMMER)]
    iq['block']['report']['spam'] = True
    iq['block']['report']['text'] = 'Unsolicited offers, again and again'
    result = await iq.send(timeout=10)
    blocked = await c['xep_0191'].get_blocked(timeout=10)
    print(json.dumps({
        'feature': 'urn:xmpp:reporting:0' in info['disco_info']['features'],
        'sent': str(iq),
        'result': result['type'],
        'blocked': sorted(str(j) for j in blocked['blocklist']['items']),
    }))
    c.disconnect()
    await asyncio.sleep(0.3)


asyncio.run(main())
