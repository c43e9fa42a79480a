#!/usr/bin/env python3
"""slixmpp's own XEP-0016, XEP-0054 and XEP-0191 plugins against Parley.

alice makes a privacy list that denies bob's messages and activates it; bob's
message bounces; alice declines the list and bob's next message arrives.
alice publishes a vCard and leaves; bob fetches it. bob blocks a JID and reads
his block list back. Prints one JSON object for the TypeScript test.
Usage: slixmpp-account.py HOST PORT_ALICE PORT_BOB ALICE BOB PASSWORD
"""
import asyncio
import json
import ssl
import sys

import slixmpp
from slixmpp import JID, Iq
from slixmpp.exceptions import IqError

HOST, PORT_A, PORT_B, ALICE, BOB, PASSWORD = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]


class Client(slixmpp.ClientXMPP):
    def __init__(self, jid):
        super().__init__(jid, PASSWORD)
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        for p in ('xep_0030', 'xep_0016', 'xep_0054', 'xep_0191'):
            self.register_plugin(p)
        self.messages = []
        self.errors = []
        self.privacy_pushes = []
        self.ready = asyncio.Event()
        self.add_event_handler('session_start', self.start)
        self.add_event_handler('message', lambda m: self.messages.append(m['body']) if m['type'] != 'error' else None)
        self.add_event_handler('message_error', lambda m: self.errors.append({'id': m['id'], 'condition': m['error']['condition']}))

    async def start(self, _):
        await self.get_roster()
        self.send_presence()
        self.ready.set()


async def call(method, *args):
    """slixmpp 1.8's XEP-0016 methods drop the future of the iq they send: catch
    it on its way out, and answer with the reply (result or error)."""
    sent = []
    original = Iq.send

    def send(self, *a, **k):
        future = original(self, *a, **k)
        sent.append(future)
        return future

    Iq.send = send
    try:
        method(*args, timeout=10)
    finally:
        Iq.send = original
    try:
        return await sent[0]
    except IqError as e:
        return e.iq


async def wait_until(pred, seconds=10):
    for _ in range(int(seconds * 10)):
        if pred():
            return True
        await asyncio.sleep(0.1)
    return False


async def main():
    alice, bob = Client(ALICE), Client(BOB)
    alice.connect((HOST, PORT_A))
    bob.connect((HOST, PORT_B))
    await asyncio.wait_for(asyncio.gather(alice.ready.wait(), bob.ready.wait()), 20)
    out = {}

    # XEP-0016
    priv = alice['xep_0016']
    # slixmpp 1.8's edit_list builds its iq but never sends it: same stanza classes, sent here.
    edit = alice.make_iq_set()
    edit['privacy']['list']['name'] = 'no-bob'
    edit['privacy']['list'].add_item(BOB, 'deny', '1', itype='jid', message=True)
    edited = await edit.send(timeout=10)
    activated = await call(priv.activate, 'no-bob')
    lists = await call(priv.get_privacy_lists)
    one = await call(priv.get_list, 'no-bob')
    out['privacy'] = {
        'edit': edited['type'], 'activate': activated['type'],
        'lists': [l['name'] for l in lists['privacy']['lists']],
        'active': lists['privacy']['active']['name'],
        'items': [{'type': i['type'], 'value': i['value'], 'action': i['action'], 'order': str(i['order']), 'message': bool(i['message'])}
                  for i in one['privacy']['list']['items']],
    }
    bob.send_message(mto=ALICE, mbody='denied by the list', mtype='chat', mfrom=None)
    await wait_until(lambda: bob.errors)
    await asyncio.sleep(0.3)
    out['privacy']['bounced'] = bob.errors
    out['privacy']['alice_got_denied'] = 'denied by the list' in alice.messages
    declined = await call(priv.deactivate)
    out['privacy']['decline'] = declined['type']
    bob.send_message(mto=ALICE, mbody='allowed again', mtype='chat')
    out['privacy']['alice_got_allowed'] = await wait_until(lambda: 'allowed again' in alice.messages)
    missing = await call(priv.get_list, 'no-such-list')
    out['privacy']['missing'] = missing['error']['condition']

    # XEP-0054
    card = alice['xep_0054'].make_vcard()
    card['FN'] = 'Alice Slixmpp'
    card['NICKNAME'] = 'slixa'
    await alice['xep_0054'].publish_vcard(card, timeout=10)
    alice.disconnect()
    await asyncio.sleep(0.5)
    fetched = await bob['xep_0054'].get_vcard(JID(ALICE), local=False, cached=False, timeout=10)
    out['vcard'] = {'FN': fetched['vcard_temp']['FN'], 'NICKNAME': fetched['vcard_temp']['NICKNAME']}

    # XEP-0191
    await bob['xep_0191'].block(JID('spam@example.org'), timeout=10)
    blocked = await bob['xep_0191'].get_blocked(timeout=10)
    out['blocked'] = sorted(str(j) for j in blocked['blocklist']['items'])

    print(json.dumps(out))
    bob.disconnect()
    await asyncio.sleep(0.3)


asyncio.run(main())
