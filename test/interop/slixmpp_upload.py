#!/usr/bin/env python3
"""slixmpp uploads a file through Parley's HTTP file upload (XEP-0363) with its
own plugin (xep_0363): the service found by disco, max-file-size read from its
form, the plugin asks for a slot and PUTs the file with aiohttp. A slot for a file
over the limit is asked for too, past the plugin's own check, to see the
service's error. Prints one JSON object; the TypeScript test GETs the URL
and compares the bytes.
Usage: slixmpp_upload.py HOST PORT JID PASSWORD FILE TOO_LARGE_SIZE
"""
import asyncio
import json
import ssl
import sys

import slixmpp
from slixmpp.exceptions import IqError

HOST, PORT, JID, PASSWORD, FILE, TOO_LARGE = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6])
NS_UPLOAD = 'urn:xmpp:http:upload:0'


class Client(slixmpp.ClientXMPP):
    def __init__(self):
        super().__init__(JID, PASSWORD)
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        for p in ('xep_0030', 'xep_0004', 'xep_0128', 'xep_0363'):
            self.register_plugin(p)
        # slixmpp 1.8.3 knows only the tls-unique channel binding, which TLS 1.3 does not define, and sends 'y'
        # (it could bind, the server seemed not to) with plain SCRAM, which a server that offers bindings refuses
        # as a downgrade (RFC 5802 §6). This client logs in with SCRAM-SHA-256 and no binding ('n').
        mechanisms = self['feature_mechanisms']
        credentials = mechanisms.sasl_callback
        mechanisms.sasl_callback = lambda required, optional: {k: v for k, v in credentials(required, optional).items() if k != 'channel_binding'}
        mechanisms.use_mech = 'SCRAM-SHA-256'
        self.ready = asyncio.Event()
        self.add_event_handler('session_start', self.start)

    async def start(self, _):
        self.send_presence()
        self.ready.set()


async def main():
    c = Client()
    c.connect((HOST, PORT))
    await asyncio.wait_for(c.ready.wait(), 15)
    out = {}
    # The plugin's own discovery (xep_0030 get_info_from_domain) hands asyncio.wait coroutines, which Python 3.11
    # forbids; the same walk here: the domain's items, the one with identity store/file and the feature, its form.
    upload = c['xep_0363']
    items = await c['xep_0030'].get_items(jid=slixmpp.JID(JID).domain, timeout=10)
    for jid, _, _ in items['disco_items']['items']:
        info = await c['xep_0030'].get_info(jid=jid, timeout=10)
        if ('store', 'file') in [(i[0], i[1]) for i in info['disco_info']['identities']] and NS_UPLOAD in info['disco_info']['features']:
            upload.upload_service = info['from']
            for form in info['disco_info'].iterables:
                values = form['values']
                if values['FORM_TYPE'] == [NS_UPLOAD]:
                    upload.max_file_size = int(values['max-file-size'])
    url = await upload.upload_file(FILE, content_type='image/png', timeout=15)
    out['url'] = url
    out['service'] = str(c['xep_0363'].upload_service)
    out['max_file_size'] = c['xep_0363'].max_file_size
    try:
        await c['xep_0363'].request_slot(c['xep_0363'].upload_service, 'big.png', TOO_LARGE, 'image/png', timeout=10)
        out['too_large'] = 'granted'
    except IqError as e:
        too_large = e.iq['error'].xml.find('{%s}file-too-large' % NS_UPLOAD)
        out['too_large'] = {'condition': e.condition, 'type': e.etype,
                            'max': too_large.findtext('{%s}max-file-size' % NS_UPLOAD) if too_large is not None else None}
    print(json.dumps(out))
    c.disconnect()
    await asyncio.sleep(0.3)


asyncio.run(main())
