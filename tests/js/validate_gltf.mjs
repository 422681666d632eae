// Runs the Khronos glTF validator on .glb/.gltf files and prints one JSON object:
// {"<path>": {"errors": n, "warnings": n, "infos": n, "hints": n, "messages": [...]}, ...}
// Usage: node tests/js/validate_gltf.mjs FILE [FILE ...]
// The Python wrapper tests/tiler/helpers_gltf.py calls this once per batch, since starting
// node costs more than validating a tile.
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import path from "node:path";

const require = createRequire(import.meta.url);
const validator = require("gltf-validator");

async function validate(file) {
  const bytes = new Uint8Array(await readFile(file));
  const report = await validator.validateBytes(bytes, {
    uri: path.basename(file),
    maxIssues: 200,
    externalResourceFunction: (uri) =>
      readFile(path.resolve(path.dirname(file), decodeURIComponent(uri))).then(
        (b) => new Uint8Array(b),
      ),
  });
  const issues = report.issues;
  return {
    errors: issues.numErrors,
    warnings: issues.numWarnings,
    infos: issues.numInfos,
    hints: issues.numHints,
    messages: issues.messages.map((m) => ({
      code: m.code,
      severity: m.severity,
      message: m.message,
      pointer: m.pointer,
    })),
  };
}

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error("usage: node validate_gltf.mjs FILE [FILE ...]");
  process.exit(2);
}
const out = {};
for (const file of files) {
  try {
    out[file] = await validate(file);
  } catch (err) {
    out[file] = {
      errors: 1, warnings: 0, infos: 0, hints: 0,
      messages: [{ code: "VALIDATOR_FAILED", severity: 0, message: String(err) }],
    };
  }
}
process.stdout.write(JSON.stringify(out) + "\n");
