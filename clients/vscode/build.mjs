// Bundles the extension (src/extension.ts + vscode-languageclient) into dist/extension.js, and the
// plain logic module into dist/logic.js for the unit tests. `--production` minifies.
import * as esbuild from "esbuild";

const production = process.argv.includes("--production");
const common = {
  bundle: true,
  platform: "node",
  format: "cjs",
  target: "node20",
  sourcemap: production ? false : "linked",
  minify: production,
  logLevel: "warning",
};
await Promise.all([
  esbuild.build({ ...common, entryPoints: ["src/extension.ts"], outfile: "dist/extension.js", external: ["vscode"] }),
  esbuild.build({ ...common, entryPoints: ["src/logic.ts"], outfile: "dist/logic.js" }),
]);
