// Validate KEDA objects with @kubernetes-models/keda (validators generated from KEDA's CRDs).
//   node keda_validate.mjs DIR < documents.json   (DIR holds node_modules; stdin: a JSON array)
// Prints one JSON line per document: {"name", "kind", "ok", "error"}. Exit 0 even when some fail:
// the caller judges each document.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const base = join(process.argv[2], "node_modules", "@kubernetes-models", "keda", "keda.sh", "v1alpha1");
const docs = JSON.parse(readFileSync(0, "utf8"));
for (const doc of docs) {
  let error = null;
  try {
    const module = await import(pathToFileURL(join(base, `${doc.kind}.js`)).href);
    new module[doc.kind](doc).validate();
  } catch (exc) {
    error = String(exc && exc.message ? exc.message : exc);
  }
  console.log(JSON.stringify({ name: doc.metadata?.name, kind: doc.kind, ok: error === null, error }));
}
