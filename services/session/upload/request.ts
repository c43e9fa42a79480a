// What a slot request (XEP-0363 §4) may ask for, and what the service tells
// about itself in disco#info (§3: identity store/file, the XEP-0128 form with
// max-file-size).
import type { Config } from '../../../libs/config/schema.ts';
import { StanzaError } from '../../../libs/errors/index.ts';
import { el, type Element } from '../../../libs/xml/element.ts';

export const NS_UPLOAD = 'urn:xmpp:http:upload:0';
const NS_DATA = 'jabber:x:data';

type UploadConfig = Config['upload'];

/** A type/subtype, optionally with parameters (RFC 9110 §8.3). */
const CONTENT_TYPE = /^([a-z0-9!#$&^_.+-]+\/[a-z0-9!#$&^_.+-]+)\s*(;[\x20-\x7e]*)?$/i;
const MAX_CONTENT_TYPE = 255;
/** Control characters and path separators: a file name is one URL path segment, shown to people. */
const BAD_NAME = /[\u0000-\u001f\u007f/\\]/;

/** The largest file a slot may be for: the per-file limit, and no more than the whole quota. */
export function maxFileSize(u: UploadConfig): number {
  return Math.min(u.maxFileBytes, u.quotaBytes);
}

/** §4: not-acceptable with <file-too-large/> saying the largest size accepted. */
export function fileTooLarge(u: UploadConfig, size: number): StanzaError {
  const max = maxFileSize(u);
  return new StanzaError('not-acceptable', `file too large: ${size} bytes, the largest accepted is ${max}`, 'modify', undefined,
    el('file-too-large', { xmlns: NS_UPLOAD }, el('max-file-size', {}, String(max))));
}

/** Whether a content type (without parameters, lower case) is one the configuration allows. */
export function contentTypeAllowed(u: UploadConfig, essence: string): boolean {
  const major = essence.slice(0, essence.indexOf('/'));
  return u.allowedContentTypes.some((a) => a === essence || (a === `${major}/*` && essence !== 'image/svg+xml'));
}

export interface SlotWanted {
  fileName: string;
  size: number;
  /** As the PUT must send it. */
  contentType: string;
}

/** The request's attributes checked against the configuration; throws the error the client gets. */
export function checkRequest(q: Element, u: UploadConfig): SlotWanted {
  const fileName = q.attrs.filename ?? '';
  if (fileName === '' || fileName.trim() === '') throw new StanzaError('bad-request', 'the request needs a filename');
  if (BAD_NAME.test(fileName) || fileName === '.' || fileName === '..') throw new StanzaError('bad-request', 'the filename may not contain control characters, / or \\');
  if ([...fileName].length > u.maxFileNameLength) throw new StanzaError('bad-request', `the filename is longer than ${u.maxFileNameLength} characters`);
  const sizeText = q.attrs.size ?? '';
  if (!/^\d{1,16}$/.test(sizeText) || Number(sizeText) === 0) throw new StanzaError('bad-request', 'the request needs a size: a whole number of bytes above 0');
  const size = Number(sizeText);
  if (size > maxFileSize(u)) throw fileTooLarge(u, size);
  const given = (q.attrs['content-type'] ?? '').trim();
  const contentType = given === '' ? 'application/octet-stream' : given;
  const m = CONTENT_TYPE.exec(contentType);
  if (!m || contentType.length > MAX_CONTENT_TYPE) throw new StanzaError('bad-request', `'${contentType.slice(0, 64)}' is not a content type`);
  const essence = m[1].toLowerCase();
  if (!contentTypeAllowed(u, essence)) {
    throw new StanzaError('not-acceptable', `files of type ${essence} are not accepted here; allowed: ${u.allowedContentTypes.join(', ')}`);
  }
  return { fileName, size, contentType };
}

/** §3: the service's identity, features and max-file-size. */
export function uploadInfo(u: UploadConfig): Element {
  const field = (v: string, value: string, type?: string) => el('field', { var: v, type }, el('value', {}, value));
  return el('query', { xmlns: 'http://jabber.org/protocol/disco#info' },
    el('identity', { category: 'store', type: 'file', name: u.name }),
    el('feature', { var: 'http://jabber.org/protocol/disco#info' }),
    el('feature', { var: 'urn:xmpp:ping' }),
    el('feature', { var: NS_UPLOAD }),
    el('x', { xmlns: NS_DATA, type: 'result' },
      field('FORM_TYPE', NS_UPLOAD, 'hidden'),
      field('max-file-size', String(maxFileSize(u)))));
}
