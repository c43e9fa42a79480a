#!/usr/bin/env python3
"""Three slixmpp clients in a Parley room through slixmpp's own xep_0045 plugin.

alice creates and configures the room, bob and carol enter; they chat, set
the subject, change roles and affiliations, leave. Prints one JSON object
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
        for p in ('xep_0030', 'xep_0045', 'xep_0004', 'xep_0199', 'xep_0203'):
            self.register_plugin(p)
        self.groupchat = []
        self.errors = []
        self.subjects = []
        self.offline = []
        self.ready = asyncio.Event()
        self.add_event_handler('session_start', self.start)
        self.add_event_handler('groupchat_message', lambda m: self.groupchat.append({'from': str(m['from']), 'body': m['body']}))
        self.add_event_handler('groupchat_message_error', lambda m: self.errors.append(m['error']['condition']))
        self.add_event_handler('groupchat_subject', lambda m: self.subjects.append({'from': str(m['from']), 'subject': m['subject']}))
        self.add_event_handler('muc::%s::got_offline' % ROOM, lambda p: self.offline.append(p['muc']['nick']))

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
