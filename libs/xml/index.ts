export { type Element, type Node, isElement, el, child, children, firstElement, text } from './element.ts';
export {
  StreamParser, DEFAULT_LIMITS, type StreamParserLimits, type StreamParserHandler,
} from './parser.ts';
export { serialize, escapeText, escapeAttr, startTag } from './serialize.ts';
export { parseFragment } from './fragment.ts';
