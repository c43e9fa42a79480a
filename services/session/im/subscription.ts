// The presence subscription state machine of RFC 6121 Appendix A, as pure
// functions: (state, event) → new state, or the same object when nothing
// changes. A change is what makes the server route, deliver and push.

export type Subscription = 'none' | 'to' | 'from' | 'both';

export interface SubscriptionState {
  subscription: Subscription;
  /** Pending-out: we asked for the contact's presence (the roster's ask='subscribe'). */
  ask: boolean;
  /** Pending-in: the contact asked for ours and we have not answered. */
  pendingIn: boolean;
  /** Pre-approved: a future subscribe from the contact is granted at once (§3.4). */
  approved: boolean;
}

export type SubscriptionType = 'subscribe' | 'subscribed' | 'unsubscribe' | 'unsubscribed';

export const NONE: SubscriptionState = Object.freeze({ subscription: 'none', ask: false, pendingIn: false, approved: false });

const hasTo = (s: Subscription) => s === 'to' || s === 'both';
const hasFrom = (s: Subscription) => s === 'from' || s === 'both';
const make = (to: boolean, from: boolean): Subscription => (to ? (from ? 'both' : 'to') : from ? 'from' : 'none');

function changed(a: SubscriptionState, b: SubscriptionState): SubscriptionState {
  return a.subscription === b.subscription && a.ask === b.ask && a.pendingIn === b.pendingIn && a.approved === b.approved ? a : b;
}

/** Appendix A.2: the user sends a subscription stanza to the contact. */
export function outbound(s: SubscriptionState, type: SubscriptionType): SubscriptionState {
  const to = hasTo(s.subscription);
  const from = hasFrom(s.subscription);
  switch (type) {
    case 'subscribe': // A.2.1
      return changed(s, { ...s, ask: !to });
    case 'unsubscribe': // A.2.2
      return changed(s, { ...s, subscription: make(false, from), ask: false });
    case 'subscribed': // A.2.3: approve a pending request, or pre-approve one to come
      if (s.pendingIn) return changed(s, { ...s, subscription: make(to, true), pendingIn: false, approved: false });
      if (!from) return changed(s, { ...s, approved: true });
      return s;
    case 'unsubscribed': // A.2.4: cancel or deny
      return changed(s, { ...s, subscription: make(to, false), pendingIn: false, approved: false });
  }
}

/** Appendix A.3: the contact's subscription stanza arrives for the user. */
export function inbound(s: SubscriptionState, type: SubscriptionType): SubscriptionState {
  const to = hasTo(s.subscription);
  const from = hasFrom(s.subscription);
  switch (type) {
    case 'subscribe': // A.3.1 (and §3.4 pre-approval)
      if (from) return s;
      if (s.approved) return changed(s, { ...s, subscription: make(to, true), approved: false, pendingIn: false });
      return changed(s, { ...s, pendingIn: true });
    case 'unsubscribe': // A.3.2
      return changed(s, { ...s, subscription: make(to, false), pendingIn: false });
    case 'subscribed': // A.3.3: only an outstanding request can be granted
      if (!s.ask) return s;
      return changed(s, { ...s, subscription: make(true, from), ask: false });
    case 'unsubscribed': // A.3.4
      return changed(s, { ...s, subscription: make(false, from), ask: false });
  }
}

export { hasFrom, hasTo };
