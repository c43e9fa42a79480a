#!/usr/bin/env python3
"""Three slixmpp clients in a Parley room through slixmpp's own xep_0045 plugin.

alice creates and configures the room, bob and carol enter; they chat, set
the subject; alice moderates one of bob's messages with slixmpp's xep_0425
(occupants get the retraction, the room archive a tombstone; carol may not
moderate); they change roles and affiliations, leave. Prints one JSON object
with what each observed; the TypeScript test asserts on it.
Usage: slixmpp_muc.py HOST PORT_A PORT_B ALICE BOB CAROL PASSWORD ROOM
"""
import asyncio
import json
import ssl
import sys

import slixmpp
from slixmpp.exceptions import IqError, PresenceError

from slixmpp_support import wait_for

HOST, PORT_A, PORT_B, ALICE, BOB, CAROL, PASSWORD, ROOM = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), *sys.argv[4:9]


class Client(slixmpp.ClientXMPP):
    def __init__(self, jid):
        super().__init__(jid, PASSWORD)
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        for p in ('xep_0030', 'xep_0045', 'xep_0004', 'xep_0199', 'xep_0203', 'xep_0359', 'xep_0421', 'xep_0425', 'xep_0313'):
            self.register_plugin(p)
        self.groupchat = []
        self.errors = []
        self.subjects = []
        self.offline = []
        self.moderated = []
        self.occupant_ids = {}
        self.ready = asyncio.Event()
        self.add_event_handler('session_start', self.start)
        self.add_event_handler('groupchat_message', self.on_groupchat)
        self.add_event_handler('groupchat_message_error', lambda m: self.errors.append(m['error']['condition']))
        self.add_event_handler('groupchat_subject', lambda m: self.subjects.append({'from': str(m['from']), 'subject': m['subject']}))
        self.add_event_handler('muc::%s::got_offline' % ROOM, lambda p: self.offline.append(p['muc']['nick']))
        self.add_event_handler('moderated_message', self.on_moderated)
        self.add_event_handler('muc::%s::presence' % ROOM, self.on_presence)

    def on_groupchat(self, m):
        oid = m.xml.find('{urn:xmpp:occupant-id:0}occupant-id')
        if m['body']:
            self.groupchat.append({'from': str(m['from']), 'body': m['body'], 'stanza_id': m['stanza_id']['id'],
                                   'occupant_id': oid.get('id') if oid is not None else None})

    def on_moderated(self, m):
        moderated = m['apply_to']['moderated']
        self.moderated.append({'id': m['apply_to']['id'], 'by': moderated['by'], 'reason': moderated['reason'], 'from': str(m['from'])})

    def on_presence(self, p):
        oid = p.xml.find('{urn:xmpp:occupant-id:0}occupant-id')
        if oid is not None:
            self.occupant_ids[p['muc']['nick']] = oid.get('id')

    async def start(self, _):
        self.send_presence()
        await self.get_roster()
        self.ready.set()



async def main():
    alice, bob, carol = Client(ALICE), Client(BOB), Client(CAROL)
    alice.connect((HOST, PORT_A))
    bob.connect((HOST, PORT_B))
    carol.connect((HOST, PORT_A))
    await asyncio.wait_for(asyncio.gather(alice.ready.wait(), bob.ready.wait(), carol.ready.wait()), 20)
    out = {}

    pres, _subject, _occ, _hist = await alice['xep_0045'].join_muc_wait(ROOM, 'Alice', maxstanzas=0, timeout=10)
    out['created'] = sorted(pres['muc']['status_codes'])
    form = await alice['xep_0045'].get_room_config(ROOM)
    out['form_fields'] = sorted(form.get_fields().keys())
    submit = alice['xep_0004'].make_form(ftype='submit')
    submit.add_field(var='FORM_TYPE', ftype='hidden', value='http://jabber.org/protocol/muc#roomconfig')
    submit.add_field(var='muc#roomconfig_roomname', value='Slixmpp Room')
    submit.add_field(var='muc#roomconfig_persistentroom', ftype='boolean', value=True)
    await alice['xep_0045'].set_room_config(ROOM, submit)
    info = await alice['xep_0030'].get_info(jid=ROOM, timeout=10)
    out['room_features'] = sorted(info['disco_info']['features'])
    out['room_name'] = [i[3] for i in info['disco_info']['identities']]

    pres, subject, occupants, _hist = await bob['xep_0045'].join_muc_wait(ROOM, 'Bob', maxstanzas=5, timeout=10)
    out['bob_joined'] = {'codes': sorted(pres['muc']['status_codes']), 'role': pres['muc']['role'], 'occupants': sorted(o['muc']['nick'] for o in occupants)}
    await wait_for(lambda: 'Bob' in alice['xep_0045'].get_roster(ROOM))
    out['alice_roster'] = sorted(alice['xep_0045'].get_roster(ROOM))

    alice.send_message(mto=ROOM, mbody='hello from slixmpp', mtype='groupchat')
    await wait_for(lambda: any(m['body'] == 'hello from slixmpp' for m in bob.groupchat))
    bob.send_message(mto=ROOM, mbody='hi alice', mtype='groupchat')
    await wait_for(lambda: any(m['body'] == 'hi alice' for m in alice.groupchat))
    alice['xep_0045'].set_subject(ROOM, 'Interop')
    await wait_for(lambda: any(s['subject'] == 'Interop' for s in bob.subjects))

    # A nick that is taken is refused with conflict.
    try:
        await carol['xep_0045'].join_muc_wait(ROOM, 'Bob', timeout=10)
        out['conflict'] = 'joined'
    except PresenceError as e:
        out['conflict'] = e.condition
    pres, subject, occupants, history = await carol['xep_0045'].join_muc_wait(ROOM, 'Carol', maxstanzas=10, timeout=10)
    out['carol'] = {'subject': subject['subject'], 'history': [h['body'] for h in history], 'occupants': sorted(o['muc']['nick'] for o in occupants)}

    # Moderation (XEP-0425, slixmpp's xep_0425): alice retracts one of bob's messages by its stanza-id.
    bob.send_message(mto=ROOM, mbody='please delete me', mtype='groupchat')
    await wait_for(lambda: any(m['body'] == 'please delete me' for m in carol.groupchat))
    await wait_for(lambda: any(m['body'] == 'please delete me' for m in alice.groupchat))
    target = next(m for m in alice.groupchat if m['body'] == 'please delete me')
    try:
        await carol['xep_0425'].moderate(slixmpp.JID(ROOM), target['stanza_id'], 'not yours to delete', timeout=10)
        out['carol_moderates'] = 'answered'
    except IqError as e:
        out['carol_moderates'] = e.condition
    await alice['xep_0425'].moderate(slixmpp.JID(ROOM), target['stanza_id'], 'spam', timeout=10)
    await wait_for(lambda: bob.moderated and carol.moderated)
    out['moderated'] = {'bob': bob.moderated, 'carol': carol.moderated, 'target': target['stanza_id']}
    out['message_occupant_id'] = target['occupant_id'] == alice.occupant_ids.get('Bob') and target['occupant_id'] is not None
    res = await carol['xep_0313'].retrieve(jid=slixmpp.JID(ROOM), rsm={'max': 50}, timeout=10)
    archived = {}
    for r in res['mam']['results']:
        inner = r.xml.find('.//{jabber:client}message')
        body = inner.find('{jabber:client}body')
        retracted = inner.find('{urn:xmpp:message-retract:1}retracted')
        moderated0 = inner.find('{urn:xmpp:message-moderate:0}moderated')
        archived[r['mam_result']['id']] = {
            'body': body.text if body is not None else None,
            'retracted_by': retracted.get('by') if retracted is not None else None,
            'moderated0_by': moderated0.get('by') if moderated0 is not None else None,
        }
    out['archive'] = archived

    # Voice: a visitor's message is refused; then kick and ban.
    await alice['xep_0045'].set_role(ROOM, 'Bob', 'visitor')
    await wait_for(lambda: bob['xep_0045'].get_jid_property(ROOM, 'Bob', 'role') == 'visitor')
    bob.send_message(mto=ROOM, mbody='muted?', mtype='groupchat')
    await wait_for(lambda: bob.errors)
    out['visitor_error'] = bob.errors[:1]
    await alice['xep_0045'].set_role(ROOM, 'Carol', 'none')
    await wait_for(lambda: 'Carol' in alice.offline)
    await alice['xep_0045'].set_affiliation(ROOM, 'outcast', jid=slixmpp.JID(CAROL))
    try:
        await carol['xep_0045'].join_muc_wait(ROOM, 'Carol', timeout=10)
        out['banned'] = 'joined'
    except PresenceError as e:
        out['banned'] = e.condition
    out['outcasts'] = [str(j) for j in await alice['xep_0045'].get_affiliation_list(ROOM, 'outcast')]
    try:
        await bob['xep_0045'].get_affiliation_list(ROOM, 'owner')
        out['bob_owner_list'] = 'answered'
    except IqError as e:
        out['bob_owner_list'] = e.condition
    bob['xep_0045'].leave_muc(ROOM, 'Bob')
    await wait_for(lambda: 'Bob' in alice.offline)
    out['alice_offline'] = sorted(set(alice.offline))
    out['alice_groupchat'] = [m['body'] for m in alice.groupchat]
    print(json.dumps(out))
    for c in (alice, bob, carol):
        c.disconnect()
    await asyncio.sleep(0.3)


asyncio.run(main())
