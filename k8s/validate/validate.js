// node validate.js [--gpu] --repo=DIR FILE.yaml...
// Checks the objects of the FILEs (rendered manifests deployed together) with checks.js
// and prints every problem; exit code 1 if there is any. run.sh calls it.
"use strict";

const fs = require("fs");
const path = require("path");
const YAML = require("yaml");
const { checkAll, exportedMetrics } = require("./checks.js");

function loadObjects(file) {
  return YAML.parseAllDocuments(fs.readFileSync(file, "utf8")).map((doc) => {
    if (doc.errors.length) throw new Error(`${file}: ${doc.errors[0].message}`);
    return doc.toJS();
  }).filter((o) => o);
}

function options(repo, gpu) {
  const k8s = path.join(repo, "k8s");
  const rules = YAML.parse(fs.readFileSync(path.join(k8s, "monitoring/prometheus-adapter-rules.yaml"), "utf8"));
  return {
    readme: fs.readFileSync(path.join(k8s, "README.md"), "utf8"),
    adapterRules: rules.rules,
    exportedMetrics: exportedMetrics(repo),
    gpu,
  };
}

if (require.main === module) {
  const args = process.argv.slice(2);
  const gpu = args.includes("--gpu");
  const repoArg = args.find((a) => a.startsWith("--repo="));
  const files = args.filter((a) => !a.startsWith("--"));
  if (!repoArg || files.length === 0) {
    console.error("usage: node validate.js [--gpu] --repo=DIR FILE.yaml...");
    process.exit(2);
  }
  const objects = files.flatMap(loadObjects);
  const errors = checkAll(objects, options(repoArg.slice("--repo=".length), gpu));
  for (const e of errors) console.error(`  ${e}`);
  console.log(`${objects.length} objects, ${errors.length} problems`);
  process.exit(errors.length ? 1 : 0);
}

module.exports = { loadObjects, options };
