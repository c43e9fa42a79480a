#!/usr/bin/env python3
"""slixmpp's own XEP-0050 and XEP-0133 plugins run Parley's administration commands.

An admin lists the commands, adds a user through the two-step form, counts the online users, and a non-admin is
refused. Prints one JSON object with what each step answered.
Usage: slixmpp_admin.py HOST PORT ADMIN OTHER PASSWORD NEWUSER
"""
import asyncio
import json
import ssl
import sys

import slixmpp
from slixmpp.exceptions import IqError

HOST, PORT, ADMIN, OTHER, PASSWORD, NEWUSER = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
NS_ADMIN = 'http://jabber.org/protocol/admin'


class Client(slixmpp.ClientXMPP):
    def __init__(self, jid):
        super().__init__(jid, PASSWORD)
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        for p in ('xep_0030', 'xep_0004', 'xep_0050', 'xep_0133'):
            self.register_plugin(p)
        self.ready = asyncio.Event()
        self.add_event_handler('session_start', lambda _: (self.send_presence(), self.ready.set()))


async def main():
    admin, other = Client(ADMIN + '/desk'), Client(OTHER + '/phone')
    admin.connect((HOST, PORT))
    other.connect((HOST, PORT))
    await asyncio.wait_for(asyncio.gather(admin.ready.wait(), other.ready.wait()), 20)
    out = {}
    server = admin.boundjid.domain
    items = await admin['xep_0133'].get_commands(server)
    out['commands'] = sorted(i[1] for i in items['disco_items']['items'])
    first = await admin['xep_0050'].send_command(server, NS_ADMIN + '#add-user', action='execute')
    out['form_status'] = first['command']['status']
    out['form_fields'] = sorted(first['command']['form'].get_fields().keys())
    form = admin['xep_0004'].make_form(ftype='submit')
    form.add_field(var='FORM_TYPE', ftype='hidden', value=NS_ADMIN)
    form.add_field(var='accountjid', value=NEWUSER)
    form.add_field(var='password', value='n3w-pass')
    form.add_field(var='password-verify', value='n3w-pass')
    done = await admin['xep_0050'].send_command(server, NS_ADMIN + '#add-user', action='complete', payload=form, sessionid=first['command']['sessionid'])
    out['added_status'] = done['command']['status']
    out['added_note'] = done['command']['notes'][0][1] if done['command']['notes'] else ''
    num = await admin['xep_0050'].send_command(server, NS_ADMIN + '#get-online-users-num', action='execute')
    out['online'] = num['command']['form'].get_values().get('onlineusersnum')
    try:
        await other['xep_0050'].send_command(server, NS_ADMIN + '#add-user', action='execute')
        out['other'] = 'result'
    except IqError as e:
        out['other'] = e.iq['error']['condition']
    other_items = await other['xep_0133'].get_commands(server)
    out['other_commands'] = len(other_items['disco_items']['items'])
    admin.disconnect()
    other.disconnect()
    print(json.dumps(out))


asyncio.run(main())
