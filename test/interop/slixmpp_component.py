#!/usr/bin/env python3
"""slixmpp's ComponentXMPP (an echo component) against Parley.

Modes:
  talk HOST COMPONENT_PORT DOMAIN SECRET USER
      the component connects, prints 'ready', greets USER and echoes every
      message until one has come from USER; what it received is recorded.
  refuse HOST COMPONENT_PORT DOMAIN SECRET FORGED_FROM
      the component connects (its secret may be wrong); once connected it sends
      a message from FORGED_FROM; the stream errors it receives are recorded.

Prints one JSON object; the TypeScript test asserts on it.
"""
import asyncio
import json
import sys

from slixmpp.componentxmpp import ComponentXMPP

from slixmpp_support import wait_for


class Echo(ComponentXMPP):
    def __init__(self, domain, secret, host, port):
        super().__init__(domain, secret, host, port)
        self.messages = []
        self.stream_errors = []
        self.started = asyncio.Event()
        self.gone = asyncio.Event()
        self.add_event_handler('session_start', lambda _: self.started.set())
        self.add_event_handler('message', self.echo)
        self.add_event_handler('stream_error', lambda e: self.stream_errors.append({'condition': e['condition'], 'text': e['text']}))
        self.add_event_handler('disconnected', lambda _: self.gone.set())

    def echo(self, msg):
        self.messages.append({'from': str(msg['from']), 'to': str(msg['to']), 'body': msg['body']})
        if msg['type'] != 'error' and msg['body']:
            self.send_message(mto=msg['from'], mfrom=msg['to'], mbody='echo: ' + msg['body'], mtype='chat')


async def talk(host, component_port, domain, secret, user_jid):
    echo = Echo(domain, secret, host, component_port)
    echo.connect()
    await asyncio.wait_for(echo.started.wait(), 20)
    print('ready', flush=True)
    echo.send_message(mto=user_jid, mfrom='news@' + domain, mbody='hello from the component', mtype='chat')
    await wait_for(lambda: any(m['from'].split('/')[0] == user_jid for m in echo.messages), 20)
    await asyncio.sleep(0.3)  # the echo is on its way
    echo.disconnect()
    return {'component': echo.messages, 'stream_errors': echo.stream_errors}


async def refuse(host, component_port, domain, secret, forged_from):
    echo = Echo(domain, secret, host, component_port)
    echo.connect()
    done = asyncio.ensure_future(echo.gone.wait())
    started = asyncio.ensure_future(echo.started.wait())
    await asyncio.wait([done, started], timeout=20, return_when=asyncio.FIRST_COMPLETED)
    connected = echo.started.is_set()
    if connected and not echo.gone.is_set():
        echo.send_message(mto='alice@localhost', mfrom=forged_from, mbody='forged', mtype='chat')
        await asyncio.wait_for(echo.gone.wait(), 20)
    started.cancel()
    return {'connected': connected, 'stream_errors': echo.stream_errors}


async def main():
    mode = sys.argv[1]
    if mode == 'talk':
        host, component_port, domain, secret, user_jid = sys.argv[2:7]
        result = await talk(host, int(component_port), domain, secret, user_jid)
    else:
        host, component_port, domain, secret, forged_from = sys.argv[2:7]
        result = await refuse(host, int(component_port), domain, secret, forged_from)
    print(json.dumps(result))


asyncio.run(main())
