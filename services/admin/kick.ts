// The stream error an administrator's kick closes a stream with.
//
// RFC 6120 §4.9.3.14 <policy-violation/>: "the entity has violated some local
// service policy"; the text says which (an administrator ended the session).
// Not <reset/> (§4.9.3.16): that one asks the client to renegotiate at once
// ("the server is closing the stream because it has new features to offer"),
// so a client would reconnect straight away; nor <conflict/> (§4.9.3.3),
// which claims a new stream replaced this one.
import type { StreamErrorCondition } from '../../libs/errors/index.ts';

export const ADMIN_KICK_CONDITION: StreamErrorCondition = 'policy-violation';
export const ADMIN_KICK_TEXT = 'the session was ended by an administrator';
