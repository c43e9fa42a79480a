#!/usr/bin/env python3
"""Three slixmpp clients use Parley's personal eventing (XEP-0163) through
slixmpp's own plugins: xep_0163, xep_0172 (nickname), xep_0084 (avatar),
xep_0060 (an OMEMO device list and bundle), xep_0115 (+notify in caps).

alice and bob subscribe to each other; bob's caps carry +notify for the
nickname, the avatar metadata and the OMEMO device list. alice publishes;
bob gets the notifications and fetches items; carol, no contact, fetches
the open bundle and is refused the nickname. Prints one JSON object with
what each observed; the TypeScript test asserts on it.
Usage: slixmpp_pep.py HOST PORT_A PORT_B ALICE BOB CAROL PASSWORD
"""
import asyncio
import base64
import hashlib
import json
import ssl
import sys
import xml.etree.ElementTree as ET

import slixmpp

from slixmpp_support import wait_for
from slixmpp.exceptions import IqError
from slixmpp.xmlstream import tostring

HOST, PORT_A, PORT_B, ALICE, BOB, CAROL, PASSWORD = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), *sys.argv[4:8]

NS_NICK = 'http://jabber.org/protocol/nick'
NS_OMEMO = 'eu.siacs.conversations.axolotl'
DEVICELIST = NS_OMEMO + '.devicelist'
BUNDLE = NS_OMEMO + '.bundles:12345'
NS_ERRORS = 'http://jabber.org/protocol/pubsub#errors'
# A 1x1 PNG.
AVATAR = base64.b64decode('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==')
# Key material, an attribute and a child element no OMEMO version defines, text that needs escaping.
BUNDLE_XML = (
    "<bundle xmlns='eu.siacs.conversations.axolotl' x-extra='kept &amp; &quot;quoted&quot;'>"
    "<signedPreKeyPublic signedPreKeyId='1'>BcFzDh+kDYOEJFfL3Dv2ZaN1rPRjZAM4MFcr3OD+Ux4y</signedPreKeyPublic>"
    "<signedPreKeySignature>xK0+3ZX9b4e5Kf2r4RK0SKk0ntq0uY5GFSJ0GJkXb0yU/4c2Wn8RE0/l3QWJFA==</signedPreKeySignature>"
    "<identityKey>BYvK7gtfbPe1t3yQnXyKfOqLBG4s6QvfHUIiQd2Cmm1Q</identityKey>"
    "<prekeys><preKeyPublic preKeyId='1'>BQ1+/key==</preKeyPublic><preKeyPublic preKeyId='2'>BQ2+/key==</preKeyPublic></prekeys>"
    "<future xmlns='urn:example:future' level='2'>&lt;not markup&gt; \u00e5</future>"
    "</bundle>")


def canonical(el):
    """C14N 2.0 of an element: equal strings mean the same XML, byte for byte once canonical."""
    return ET.canonicalize(tostring(el))


class Client(slixmpp.ClientXMPP):
    def __init__(self, jid, interests=()):
        # Every client takes +notify for nickname and avatar metadata (xep_0172 and xep_0084 do so at bind).
        super().__init__(jid, PASSWORD)
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        for p in ('xep_0030', 'xep_0004', 'xep_0060', 'xep_0115', 'xep_0163', 'xep_0172', 'xep_0084'):
            self.register_plugin(p)
        self.interests = interests
        self.roster.auto_authorize = None
        self.roster.auto_subscribe = False
        self.nicks = []
        self.metadata = []
        self.devicelists = []
        self.subscribe_from = set()
        self.ready = asyncio.Event()
        self['xep_0060'].map_node_event(DEVICELIST, 'omemo_devicelist')
        self.add_event_handler('session_start', self.start)
        self.add_event_handler('presence_subscribe', lambda p: self.subscribe_from.add(p['from'].bare))
        self.add_event_handler('user_nick_publish', self.on_nick)
        self.add_event_handler('avatar_metadata_publish', self.on_metadata)
        self.add_event_handler('omemo_devicelist_publish', self.on_devicelist)

    async def start(self, _):
        await self.get_roster()
        # The device list is no plugin's: its +notify is added here, before the first presence carries the caps.
        if DEVICELIST in self.interests:
            self['xep_0163'].add_interest(DEVICELIST)
        await self['xep_0115'].update_caps(broadcast=False)
        self.send_presence()
        self.ready.set()

    def on_nick(self, msg):
        item = msg['pubsub_event']['items']['item']
        self.nicks.append({'from': msg['from'].bare, 'id': item['id'], 'nick': item['nick']['nick']})

    def on_metadata(self, msg):
        item = msg['pubsub_event']['items']['item']
        self.metadata.append({'from': msg['from'].bare, 'id': item['id'],
                              'info': [{'id': i['id'], 'bytes': i['bytes'], 'type': i['type'], 'width': i['width'], 'height': i['height']}
                                       for i in item['avatar_metadata']['items']]})

    def on_devicelist(self, msg):
        item = msg['pubsub_event']['items']['item']
        payload = item['payload']
        self.devicelists.append({'from': msg['from'].bare, 'id': item['id'],
                                 'devices': [d.get('id') for d in payload.findall('{%s}device' % NS_OMEMO)] if payload is not None else []})



def error_of(e):
    app = [c.tag.split('}')[1] for c in e.iq['error'].xml if c.tag.startswith('{%s}' % NS_ERRORS)]
    return {'condition': e.condition, 'type': e.etype, 'app': app}


async def main():
    alice = Client(ALICE)
    bob = Client(BOB, (DEVICELIST,))
    carol = Client(CAROL, (DEVICELIST,))  # interested too, but no contact: presence nodes send her nothing
    alice.connect((HOST, PORT_A))
    bob.connect((HOST, PORT_B))
    carol.connect((HOST, PORT_B))
    await asyncio.wait_for(asyncio.gather(alice.ready.wait(), bob.ready.wait(), carol.ready.wait()), 20)
    out = {}
    info = await bob['xep_0030'].get_info(local=True)
    out['bob_notify'] = sorted(f for f in info['features'] if f.endswith('+notify'))

    # Mutual presence subscription, each side approving explicitly.
    alice.send_presence_subscription(pto=BOB)
    await wait_for(lambda: ALICE in bob.subscribe_from)
    bob.send_presence(pto=ALICE, ptype='subscribed')
    bob.send_presence_subscription(pto=ALICE)
    await wait_for(lambda: BOB in alice.subscribe_from)
    alice.send_presence(pto=BOB, ptype='subscribed')
    await wait_for(lambda: alice.client_roster[BOB]['subscription'] == 'both' and bob.client_roster[ALICE]['subscription'] == 'both')
    out['subscriptions'] = [alice.client_roster[BOB]['subscription'], bob.client_roster[ALICE]['subscription']]

    # The server learns bob's +notify from his caps (asking his client); until then publishes
    # reach nobody. Publish the nick until a notification comes back.
    for attempt in range(40):
        await alice['xep_0172'].publish_nick('Alice %d' % attempt, timeout=10)
        if await wait_for(lambda: any(n['nick'] == 'Alice %d' % attempt for n in bob.nicks), 0.5):
            break
    out['nick_attempts'] = attempt + 1
    await alice['xep_0172'].publish_nick('Alice in Slixmpp', timeout=10)
    await wait_for(lambda: any(n['nick'] == 'Alice in Slixmpp' for n in bob.nicks))
    out['bob_nick'] = next((n for n in bob.nicks if n['nick'] == 'Alice in Slixmpp'), None)

    avatar_id = alice['xep_0084'].generate_id(AVATAR)
    await alice['xep_0084'].publish_avatar(AVATAR, timeout=10)
    # Width and height as text: xep_0084 1.8.3 formats bytes itself but puts int width/height in the XML unserialised.
    await alice['xep_0084'].publish_avatar_metadata({'id': avatar_id, 'type': 'image/png', 'bytes': len(AVATAR), 'width': '1', 'height': '1'}, timeout=10)
    await alice['xep_0060'].publish(None, DEVICELIST, id='current', payload=ET.fromstring("<list xmlns='eu.siacs.conversations.axolotl'><device id='12345'/></list>"), timeout=10)
    form = alice['xep_0004'].make_form(ftype='submit')
    form.add_field(var='FORM_TYPE', ftype='hidden', value='http://jabber.org/protocol/pubsub#publish-options')
    form.add_field(var='pubsub#access_model', value='open')
    await alice['xep_0060'].publish(None, BUNDLE, id='current', payload=ET.fromstring(BUNDLE_XML), options=form, timeout=10)

    await wait_for(lambda: bob.metadata and bob.devicelists)
    out['avatar_id'] = avatar_id
    out['bob_metadata'] = bob.metadata
    out['bob_devicelists'] = bob.devicelists
    out['alice_own_events'] = {'nick': len(alice.nicks), 'metadata': len(alice.metadata), 'devicelist': len(alice.devicelists)}

    res = await bob['xep_0060'].get_item(ALICE, 'urn:xmpp:avatar:data', avatar_id, timeout=10)
    items = list(res['pubsub']['items'])
    data = items[0]['avatar_data']['value'] if items else b''
    out['bob_avatar'] = {'ids': [i['id'] for i in items], 'bytes': base64.b64encode(data).decode(),
                         'sha1': hashlib.sha1(data).hexdigest(), 'matches': data == AVATAR}

    published = ET.canonicalize(BUNDLE_XML)
    out['bundle_published'] = published
    res = await bob['xep_0060'].get_items(ALICE, BUNDLE, max_items=1, timeout=10)
    items = list(res['pubsub']['items'])
    out['bob_bundle'] = {'ids': [i['id'] for i in items], 'xml': [canonical(i['payload']) for i in items]}

    res = await carol['xep_0060'].get_item(ALICE, BUNDLE, 'current', timeout=10)
    items = list(res['pubsub']['items'])
    out['carol_bundle'] = {'ids': [i['id'] for i in items], 'xml': [canonical(i['payload']) for i in items]}
    try:
        res = await carol['xep_0060'].get_items(ALICE, NS_NICK, timeout=10)
        out['carol_nick'] = {'answered': [canonical(i['payload']) for i in res['pubsub']['items']]}
    except IqError as e:
        out['carol_nick'] = error_of(e)
    await asyncio.sleep(0.3)
    out['carol_events'] = {'nick': len(carol.nicks), 'metadata': len(carol.metadata), 'devicelist': len(carol.devicelists)}

    print(json.dumps(out))
    for c in (alice, bob, carol):
        c.disconnect()
    await asyncio.sleep(0.3)


asyncio.run(main())
