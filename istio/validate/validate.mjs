// Validates every Istio resource in the given YAML files against Istio's CRD schemas, with
// the classes of @kubernetes-models/istio (each checks its object against the CRD's OpenAPI
// schema). Other kinds are skipped here: `make test` checks them with kubernetes-validate.
// Exits non-zero, naming the object, on the first file with an invalid or unknown resource.
//   node validate.mjs FILE...
import { readFileSync } from "node:fs";
import { loadAll } from "js-yaml";
import * as extensions from "@kubernetes-models/istio/extensions.istio.io/v1alpha1";
import * as networkingAlpha from "@kubernetes-models/istio/networking.istio.io/v1alpha3";
import * as networkingBeta from "@kubernetes-models/istio/networking.istio.io/v1beta1";
import * as security from "@kubernetes-models/istio/security.istio.io/v1";
import * as install from "@kubernetes-models/istio/install.istio.io/v1alpha1";
// The package has Telemetry's v1alpha1 only; Istio serves v1 with the same schema.
import * as telemetry from "@kubernetes-models/istio/telemetry.istio.io/v1alpha1";

const models = {
  "extensions.istio.io/v1alpha1": extensions,
  "networking.istio.io/v1alpha3": networkingAlpha,
  "networking.istio.io/v1beta1": networkingBeta,
  "security.istio.io/v1": security,
  "install.istio.io/v1alpha1": install,
  "telemetry.istio.io/v1": telemetry,
};

let failures = 0;
let checked = 0;
for (const file of process.argv.slice(2)) {
  for (const object of loadAll(readFileSync(file, "utf8"))) {
    if (!object || !String(object.apiVersion).includes("istio.io")) continue;
    const name = `${file}: ${object.kind} ${object.metadata?.namespace}/${object.metadata?.name}`;
    const Model = models[object.apiVersion]?.[object.kind];
    if (!Model) {
      console.error(`${name}: no schema for ${object.apiVersion} ${object.kind}`);
      failures++;
      continue;
    }
    try {
      // Telemetry v1 is checked against its v1alpha1 schema (the same), under that version.
      const checkedAs =
        object.apiVersion === "telemetry.istio.io/v1"
          ? { ...object, apiVersion: "telemetry.istio.io/v1alpha1" }
          : object;
      new Model(checkedAs).validate();
      checked++;
      console.log(`${name}: valid`);
    } catch (error) {
      console.error(`${name}: INVALID\n${error.message ?? error}`);
      failures++;
    }
  }
}
if (failures > 0 || checked === 0) {
  console.error(`${failures} invalid, ${checked} valid`);
  process.exit(1);
}
