// Splitting JID strings that were normalized on the way in (by the c2s): no
// validation, no allocation beyond the slices. '/' first, since a resource
// may contain '@' and '/'.
export function bareJid(jid: string): string {
  const i = jid.indexOf('/');
  return i < 0 ? jid : jid.slice(0, i);
}

export function resourcePart(jid: string): string {
  const i = jid.indexOf('/');
  return i < 0 ? '' : jid.slice(i + 1);
}

export function domainPart(jid: string): string {
  const bare = bareJid(jid);
  const at = bare.indexOf('@');
  return at < 0 ? bare : bare.slice(at + 1);
}

export function hasLocalpart(jid: string): boolean {
  return bareJid(jid).includes('@');
}
