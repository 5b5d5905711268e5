// Times an ONNX model in ONNX Runtime (CPU) through onnxruntime-node.
// Driven by peers.py; data goes through files in a work directory, timing
// requests through stdin and stdout, so that the caller decides when each timed
// pass runs (in turns with other programs' passes).
//
//   node ort_run.mjs --node-modules DIR --model M.onnx --work WORK --threads T
//                    [--spinning on|off] [--optimized-model OUT.onnx]
//
// WORK/request.json: {"inputs": [{"name", "type": "float32"|"int64", "dims": [...], "file"}],
//                     "output": NAME}
//   (each file holds the raw little-endian elements, relative to WORK).
// Protocol: after the session is created and has run once untimed (warm-up),
// prints "ready"; then for each line read from stdin runs one timed pass and
// prints its time in ms. At the end of stdin writes WORK/output.bin (the
// output, raw float32) and WORK/result.json:
//   {"version": "...", "ms": [the times], "output_dims": [...], "output_type": "float32",
//    "session_options": {the options given to InferenceSession.create}}.
// Session: intraOpNumThreads T, interOpNumThreads 1, sequential execution,
// graphOptimizationLevel "all", CPU execution provider. --spinning sets the
// session config entry "session.intra_op.allow_spinning" ("1" on, "0" off;
// onnxruntime-node flattens `extra` into config entries, joining keys with
// "."); without it ONNX Runtime's default (on) applies. --optimized-model
// writes the graph as ONNX Runtime optimised it (to see what it fused). Each
// pass is timed with process.hrtime and covers session.run: feeding the
// inputs, the forward pass, returning the output.
// Exit status: 0 success, 2 usage error, 1 anything else (message on stderr).
import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";

function usage(message) {
  process.stderr.write(`ort_run.mjs: ${message}\n` +
    "usage: node ort_run.mjs --node-modules DIR --model M.onnx --work WORK --threads T\n" +
    "                        [--spinning on|off] [--optimized-model OUT.onnx]\n");
  process.exit(2);
}

function parse(argv) {
  const o = {};
  for (let i = 0; i < argv.length; i += 2) {
    const flag = argv[i], value = argv[i + 1];
    const key = { "--node-modules": "nodeModules", "--model": "model", "--work": "work",
                  "--threads": "threads", "--spinning": "spinning",
                  "--optimized-model": "optimizedModel" }[flag];
    if (!key) usage(`unknown option '${flag}'`);
    if (value === undefined) usage(`${flag}: expected a value`);
    o[key] = value;
  }
  for (const key of ["nodeModules", "model", "work", "threads"])
    if (o[key] === undefined) usage("all of --node-modules, --model, --work, --threads are required");
  if (!/^\d+$/.test(o.threads) || Number(o.threads) < 1) usage(`--threads: expected an integer >= 1, found '${o.threads}'`);
  o.threads = Number(o.threads);
  if (o.spinning !== undefined && o.spinning !== "on" && o.spinning !== "off")
    usage(`--spinning: expected on or off, found '${o.spinning}'`);
  return o;
}

function typedArray(type, bytes) {
  // Copy into a fresh, aligned ArrayBuffer.
  const buffer = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  if (type === "float32") return new Float32Array(buffer);
  if (type === "int64") return new BigInt64Array(buffer);
  throw new Error(`unsupported input type ${type}`);
}

async function main() {
  const o = parse(process.argv.slice(2));
  const require = createRequire(import.meta.url);
  const pkgDir = join(resolve(o.nodeModules), "onnxruntime-node");
  let ort, version;
  try {
    ort = require(pkgDir);
    version = require(join(pkgDir, "package.json")).version;
  } catch (e) {
    throw new Error(`cannot load onnxruntime-node from ${o.nodeModules} (run bench/peers/install.sh): ${e.message}`);
  }

  const request = JSON.parse(readFileSync(join(o.work, "request.json"), "utf8"));
  const feeds = {};
  for (const input of request.inputs) {
    const data = typedArray(input.type, readFileSync(join(o.work, input.file)));
    const count = input.dims.reduce((a, b) => a * b, 1);
    if (data.length !== count) throw new Error(`${input.file}: expected ${count} elements, found ${data.length}`);
    feeds[input.name] = new ort.Tensor(input.type, data, input.dims);
  }

  const options = {
    executionProviders: ["cpu"],
    intraOpNumThreads: o.threads,
    interOpNumThreads: 1,
    executionMode: "sequential",
    graphOptimizationLevel: "all",
  };
  if (o.spinning !== undefined)
    options.extra = { session: { intra_op: { allow_spinning: o.spinning === "on" ? "1" : "0" } } };
  if (o.optimizedModel !== undefined) options.optimizedModelFilePath = resolve(o.optimizedModel);
  const session = await ort.InferenceSession.create(o.model, options);

  let results = await session.run(feeds);  // warm-up, untimed
  process.stdout.write("ready\n");
  const ms = [];
  for await (const _ of createInterface({ input: process.stdin })) {
    const start = process.hrtime.bigint();
    results = await session.run(feeds);
    ms.push(Number(process.hrtime.bigint() - start) / 1e6);
    process.stdout.write(`${ms[ms.length - 1]}\n`);
  }

  const out = results[request.output];
  if (!out) throw new Error(`the model has no output '${request.output}' (outputs: ${session.outputNames.join(", ")})`);
  if (out.type !== "float32") throw new Error(`output '${request.output}' is ${out.type}, expected float32`);
  writeFileSync(join(o.work, "output.bin"), Buffer.from(out.data.buffer, out.data.byteOffset, out.data.byteLength));
  writeFileSync(join(o.work, "result.json"),
                JSON.stringify({ version, ms, output_dims: out.dims, output_type: out.type, session_options: options }) + "\n");
  await session.release?.();
}

main().catch((e) => {
  process.stderr.write(`ort_run.mjs: ${e && e.message ? e.message : e}\n`);
  process.exit(1);
});
