// Renders Markdown documents to HTML as the KFP UI's Markdown viewer does.
// The viewer (kubeflow/pipelines frontend/src/components/viewers/MarkdownViewer.tsx, 2.15.0 and
// 2.17.0) renders `<Markdown options={{disableParsingRawHTML: true, overrides: {a: ...}}}>`
// from markdown-to-jsx; the link override only changes click handling, so it is left out.
// Usage: node render.js <kfp-2.15|kfp-2.17>  (stdin: JSON list of strings; stdout: JSON list
// of HTML strings, same order).
'use strict';
const path = require('path');
const { createRequire } = require('module');

const frontend = process.argv[2];
if (!['kfp-2.15', 'kfp-2.17'].includes(frontend)) {
  process.stderr.write(`usage: node render.js kfp-2.15|kfp-2.17 (got ${frontend})\n`);
  process.exit(2);
}
const load = createRequire(path.join(__dirname, frontend, 'package.json'));
const React = load('react');
const server = load('react-dom/server');
const markdownToJsx = load('markdown-to-jsx');
const Markdown = markdownToJsx.default || markdownToJsx;
const options = { disableParsingRawHTML: true };

let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => (input += chunk));
process.stdin.on('end', () => {
  const documents = JSON.parse(input);
  const html = documents.map((text) =>
    server.renderToStaticMarkup(React.createElement(Markdown, { options }, text)),
  );
  process.stdout.write(JSON.stringify(html));
});
