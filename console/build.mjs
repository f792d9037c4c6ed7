// Builds the console into dist/: app.js and app.css from src/, and index.html. The output depends
// only on the sources and the locked package versions, so `.ci/run` can build it again and compare
// it with the committed files. It also holds the first load to its budget (PRODUCT: 300 KB
// compressed). `node build.mjs --watch` rebuilds on every change, for working on the console
// against a running hub (which reads dist/ from disk when WEFT_CONSOLE_DIR points at it).
import * as esbuild from "esbuild";
import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { gzipSync } from "node:zlib";

const BUDGET_GZIP_BYTES = 300 * 1024;
const watch = process.argv.includes("--watch");

const options = {
  entryPoints: { app: "src/main.tsx" },
  bundle: true,
  minify: true,
  format: "esm",
  target: ["es2022"],
  outdir: "dist",
  jsx: "automatic",
  jsxImportSource: "preact",
  legalComments: "eof",
  logLevel: "warning",
  charset: "utf8",
};

mkdirSync("dist", { recursive: true });
writeFileSync("dist/index.html", readFileSync("src/index.html"));

if (watch) {
  const ctx = await esbuild.context(options);
  await ctx.watch();
  console.log("watching src/ …");
} else {
  await esbuild.build(options);
  let total = 0;
  for (const file of ["index.html", "app.js", "app.css"]) {
    const bytes = gzipSync(readFileSync(`dist/${file}`), { level: 9 }).length;
    total += bytes;
    console.log(`${file}: ${bytes} bytes compressed`);
  }
  console.log(`first load: ${total} bytes compressed (budget ${BUDGET_GZIP_BYTES})`);
  if (total > BUDGET_GZIP_BYTES) {
    console.error("the console's first load is over its budget");
    process.exit(1);
  }
}
