// XEP-0004 data forms: building the forms the room shows and reading the ones
// clients submit. A submitted form that breaks the format is refused with
// bad-request before anything reads its values.
import { StanzaError } from '../../../libs/errors/index.ts';
import { children, el, text, type Element } from '../../../libs/xml/element.ts';

export const NS_DATA = 'jabber:x:data';

export type FieldType =
  | 'boolean' | 'fixed' | 'hidden' | 'jid-multi' | 'jid-single'
  | 'list-multi' | 'list-single' | 'text-multi' | 'text-private' | 'text-single';

export interface FormField {
  var?: string;
  type: FieldType;
  label?: string;
  values?: readonly string[];
  options?: readonly { value: string; label?: string }[];
  /** The submitter must fill it in (XEP-0004 <required/>). */
  required?: boolean;
}

export function formElement(type: 'form' | 'result', fields: readonly FormField[], title?: string): Element {
  return el('x', { xmlns: NS_DATA, type },
    title ? el('title', {}, title) : undefined,
    ...fields.map((f) => el('field', { var: f.var, type: f.type, label: f.label },
      f.required ? el('required') : undefined,
      ...(f.values ?? []).map((v) => el('value', {}, v)),
      ...(f.options ?? []).map((o) => el('option', { label: o.label }, el('value', {}, o.value))))));
}

export const hidden = (name: string, value: string): FormField => ({ var: name, type: 'hidden', values: [value] });

export interface SubmittedForm {
  /** The hidden FORM_TYPE value, when the form has one. */
  formType: string | undefined;
  fields: Map<string, string[]>;
}

/** Read a form of type 'submit'; a second field of one name or a field without a name is malformed. */
export function parseSubmitted(x: Element): SubmittedForm {
  if (x.name !== 'x' || x.attrs.xmlns !== NS_DATA) throw new StanzaError('bad-request', 'expected a jabber:x:data form');
  if (x.attrs.type !== 'submit') throw new StanzaError('bad-request', `a form of type '${x.attrs.type ?? ''}' cannot be submitted`);
  const fields = new Map<string, string[]>();
  for (const f of children(x, 'field')) {
    const name = f.attrs.var;
    if (!name) throw new StanzaError('bad-request', 'a submitted field needs a var');
    if (fields.has(name)) throw new StanzaError('bad-request', `field ${name} appears twice`);
    fields.set(name, children(f, 'value').map((v) => text(v)));
  }
  const ft = fields.get('FORM_TYPE');
  fields.delete('FORM_TYPE');
  return { formType: ft?.[0], fields };
}

function one(name: string, values: readonly string[]): string {
  if (values.length > 1) throw new StanzaError('bad-request', `field ${name} takes one value`);
  return values[0] ?? '';
}

export function booleanField(name: string, values: readonly string[]): boolean {
  const v = one(name, values);
  if (v === '1' || v === 'true') return true;
  if (v === '0' || v === 'false') return false;
  throw new StanzaError('bad-request', `field ${name} must be a boolean, not '${v}'`);
}

export function textField(name: string, values: readonly string[], maxLength: number): string {
  const v = one(name, values);
  if (v.length > maxLength) throw new StanzaError('not-acceptable', `field ${name} is longer than ${maxLength} characters`);
  return v;
}

export function listSingle<T extends string>(name: string, values: readonly string[], allowed: readonly T[]): T {
  const v = one(name, values);
  if (!(allowed as readonly string[]).includes(v)) throw new StanzaError('bad-request', `field ${name} must be one of ${allowed.join(', ')}`);
  return v as T;
}

export function listMulti<T extends string>(name: string, values: readonly string[], allowed: readonly T[]): T[] {
  for (const v of values) if (!(allowed as readonly string[]).includes(v)) throw new StanzaError('bad-request', `field ${name}: '${v}' is not one of ${allowed.join(', ')}`);
  return [...new Set(values)] as T[];
}

export function integerField(name: string, values: readonly string[], min: number, max: number): number {
  const v = one(name, values);
  if (!/^\d{1,9}$/.test(v)) throw new StanzaError('bad-request', `field ${name} must be a whole number`);
  const n = Number(v);
  if (n < min || n > max) throw new StanzaError('not-acceptable', `field ${name} must lie between ${min} and ${max}`);
  return n;
}
