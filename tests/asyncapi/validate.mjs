// Parses an AsyncAPI document with @asyncapi/parser, following its file references,
// and prints the diagnostics as one JSON array on stdout:
// [{"severity": "error" | "warning" | "information" | "hint", "code", "message", "path"}].
// Exit code 0 when the parser produced a document, 1 when the document is invalid.
import { Parser, fromFile } from "@asyncapi/parser";

const SEVERITY = ["error", "warning", "information", "hint"];

const path = process.argv[2];
if (!path) {
  console.error("usage: node validate.mjs DOCUMENT");
  process.exit(2);
}

const { document, diagnostics } = await fromFile(new Parser(), path).parse();
const found = diagnostics.map((d) => ({
  severity: SEVERITY[d.severity] ?? String(d.severity),
  code: String(d.code),
  message: d.message,
  path: d.path.join("/"),
}));
console.log(JSON.stringify(found));
process.exit(document ? 0 : 1);
