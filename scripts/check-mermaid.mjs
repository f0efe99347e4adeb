// Parses every ```mermaid block of the Markdown files named on the command line with mermaid's own
// parser (in jsdom, no browser), so a diagram that GitHub would show as an error fails the check.
// Run by scripts/check-docs, which installs mermaid and jsdom next to a copy of this file.
import fs from 'node:fs';
import { JSDOM } from 'jsdom';

const dom = new JSDOM('<!doctype html><html><body></body></html>');
globalThis.window = dom.window;
globalThis.document = dom.window.document;
globalThis.DOMParser = dom.window.DOMParser;
globalThis.Element = dom.window.Element;
const { default: mermaid } = await import('mermaid');
mermaid.initialize({ startOnLoad: false });

let blocks = 0;
let invalid = 0;
for (const file of process.argv.slice(2)) {
  const text = fs.readFileSync(file, 'utf8');
  for (const match of text.matchAll(/```mermaid\n([\s\S]*?)```/g)) {
    blocks += 1;
    const line = text.slice(0, match.index).split('\n').length;
    try {
      await mermaid.parse(match[1]);
    } catch (error) {
      invalid += 1;
      const why = String(error.message || error).split('\n').slice(0, 3).join(' ');
      console.error(`${file}:${line}: invalid mermaid: ${why}`);
    }
  }
}
console.error(`check-mermaid: ${blocks} blocks, ${invalid} invalid`);
process.exit(invalid > 0 ? 1 : 0);
