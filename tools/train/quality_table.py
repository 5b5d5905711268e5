#!/usr/bin/python3
"""The quality table of reuse planning on the trained fixture (bench/README.md
§Reuse planning on a trained model): for K heads reused in layers 1..L-1,
chosen by reuseformer-plan's planner and naively (the last K heads of each
layer take the first K of the layer below), the held-out MLM loss and accuracy
(the MLM head applied, here, to the library's final hidden states from
reuseformer-encode, and with the script's own reuse modules), the predicted
multiply-add saving and the measured forward-time saving; then a short
reuse-aware fine-tune of planned checkpoints; and the mean best-match
similarity of the trained model against the same model at initialisation.

    LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-pthread OPENBLAS_NUM_THREADS=1 \\
        nice -n 10 /usr/bin/python3 tools/train/quality_table.py --build build --work /tmp/quality

Needs a build with the tools (reuseformer-plan, reuseformer-encode) and what
train_mlm.py needs. Prints the table as Markdown and writes WORK/table.json.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TRAIN = os.path.join(HERE, "train_mlm.py")


def run(cmd):
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def evaluate(args, model_dir, tag):
    """Library and torch held-out loss/accuracy of the checkpoint in model_dir."""
    out = os.path.join(args.work, tag + "_hidden.safetensors")
    run([args.encode, "--model", model_dir, "--input", args.heldout, "--output", out, "--threads", "1"])
    return json.loads(run([sys.executable, TRAIN, "--evaluate", model_dir, "--heldout", args.heldout,
                           "--library-output", out]))


def plan(args, k, naive, prefix=""):
    tag = f"{prefix}k{k}_{'naive' if naive else 'planned'}"
    out = os.path.join(args.work, tag)
    cmd = [args.plan, "--model", args.model, "--calibration", args.calibration, "--heldout", args.heldout,
           "--reuse-heads", str(k), "--out", out, "--threads", "1", "--repeat", str(args.repeat)]
    run(cmd + (["--naive"] if naive else []))
    with open(os.path.join(out, "plan.json")) as f:
        report = json.load(f)
    return tag, out, report


def mean_best_match(report):
    rows = [r for r in report["similarity"] if r["source"] == r["layer"] - 1]
    best = []
    for r in rows:
        s = r["total_variation"]
        h = int(len(s) ** 0.5)
        best += [max(s[j * h:(j + 1) * h]) for j in range(h)]
    return sum(best) / len(best)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build")
    ap.add_argument("--model", default="tests/fixtures/trained_mlm")
    ap.add_argument("--work", default="/tmp/reuseformer-quality")
    ap.add_argument("--ks", default="1,2,4,8")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--finetune-steps", type=int, default=40)
    ap.add_argument("--finetune-ks", default="4")
    args = ap.parse_args()
    args.plan = os.path.join(args.build, "tools", "reuseformer-plan")
    args.encode = os.path.join(args.build, "tools", "reuseformer-encode")
    args.calibration = os.path.join(args.model, "calibration.safetensors")
    args.heldout = os.path.join(args.model, "heldout.safetensors")
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)

    rows = []
    base = evaluate(args, args.model, "original")
    rows.append({"variant": "original (no reuse)", **base, "predicted_saving": 0.0, "measured_saving": 0.0})
    for k in [int(x) for x in args.ks.split(",")]:
        for naive in (False, True):
            tag, out, report = plan(args, k, naive)
            ev = evaluate(args, out, tag)
            ms = report["forward_ms"]
            rows.append({"variant": f"K={k} {'naive' if naive else 'planned'}", **ev,
                         "predicted_saving": report["predicted_multiply_adds"]["saved_fraction"],
                         "measured_saving": 1 - ms["planned"] / ms["original"],
                         "reused_similarity": sum(h["similarity"] for l in report["plan"] for h in l["reused"]) /
                         max(1, sum(len(l["reused"]) for l in report["plan"])),
                         "cosine": report["drift"]["cosine"], "dir": out})
    for k in [int(x) for x in args.finetune_ks.split(",")]:
        for naive in (False, True):
            src = os.path.join(args.work, f"k{k}_{'naive' if naive else 'planned'}")
            dst = src + "_finetuned"
            run([sys.executable, TRAIN, "--finetune", src, "--steps", str(args.finetune_steps), "--out", dst])
            shutil.copy(os.path.join(args.model, "calibration.safetensors"), dst)
            ev = evaluate(args, dst, os.path.basename(dst))
            rows.append({"variant": f"K={k} {'naive' if naive else 'planned'} + {args.finetune_steps} fine-tune steps", **ev})

    init = os.path.join(args.work, "init")
    run([sys.executable, TRAIN, "--minutes", "0", "--out", init])
    _, _, init_report = plan(argparse.Namespace(**{**vars(args), "model": init,
                                                   "calibration": os.path.join(init, "calibration.safetensors"),
                                                   "heldout": os.path.join(init, "heldout.safetensors")}), 1, False, "init_")
    trained_report = json.load(open(os.path.join(args.work, "k1_planned", "plan.json")))
    similarity = {"trained": mean_best_match(trained_report), "initialised": mean_best_match(init_report)}

    with open(os.path.join(args.work, "table.json"), "w") as f:
        json.dump({"rows": rows, "mean_best_match_similarity": similarity}, f, indent=2)
    print_table(rows, similarity)


def print_table(rows, similarity):
    print("| variant | MLM loss (library) | accuracy (library) | MLM loss (torch modules) | predicted MAC saving "
          "| measured time saving | mean S of reused pairs | cosine to original |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        pred = f"{100 * r['predicted_saving']:.1f}%" if "predicted_saving" in r else ""
        meas = f"{100 * r['measured_saving']:.1f}%" if "measured_saving" in r else ""
        sim = f"{r['reused_similarity']:.3f}" if "reused_similarity" in r else ""
        cos = f"{r['cosine']:.5f}" if "cosine" in r else ""
        print(f"| {r['variant']} | {r['library_loss']:.4f} | {r['library_accuracy']:.4f} | {r['torch_loss']:.4f} "
              f"| {pred} | {meas} | {sim} | {cos} |")
    print(f"\nmean best-match similarity (layers 1..L-1): trained {similarity['trained']:.4f}, "
          f"initialised {similarity['initialised']:.4f}")


if __name__ == "__main__":
    main()
