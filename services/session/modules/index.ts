// The protocol modules: adding a feature means adding a file and a line here.
// Each may still be turned off by `modules.disabled` or its own `enabled`.
import type { XmppModule } from '../module.ts';
import blocking from './blocking.ts';
import contactAddresses from './contact-addresses.ts';
import disco from './disco.ts';
import last from './last.ts';
import pep from './pep.ts';
import ping from './ping.ts';
import privacy from './privacy.ts';
import privateStorage from './private.ts';
import register from './register.ts';
import time from './time.ts';
import vcard from './vcard.ts';
import version from './version.ts';
import streamManagement from '../sm/index.ts';
import carbons from './carbons.ts';
import components from './components.ts';
import mam from './mam.ts';
import muc from './muc.ts';
import upload from './upload.ts';
import push from './push.ts';
import externalServices from './external-services.ts';
import reporting from './reporting.ts';
import strangers from './strangers.ts';
import adminCommands from './admin-commands.ts';

// strangers comes before the modules whose message hooks archive, copy or notify: a message it refuses or holds reaches none of them.
export const modules: readonly XmppModule[] = [disco, ping, time, version, last, privacy, blocking, reporting, strangers, vcard, privateStorage, contactAddresses, register, pep,
  streamManagement, carbons, mam, push, muc, upload, externalServices, components, adminCommands];
