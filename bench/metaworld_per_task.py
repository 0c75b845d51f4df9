"""Per easy/hard task: imagined rollouts' match and replay (runs/mw19/imagine), and each
method's evaluation success over its 3 seeds (runs/mw19/eval/*.json, the final policy's
episodes), to compare imagined wall-task replays with real-only's policy on the same tasks."""
import csv, glob, json, collections, sys
run = sys.argv[1] if len(sys.argv) > 1 else "runs/mw19"
im = collections.defaultdict(lambda: [0, 0, 0])
for suite in ("easy", "hard"):
    for r in csv.DictReader(open(f"{run}/imagine/{suite}/validity.csv")):
        t = json.loads(r["goal"])["task"]
        im[t][0] += 1; im[t][1] += r["goal_met"] == "True"; im[t][2] += r["replay_success"] == "True"
pol = collections.defaultdict(lambda: collections.defaultdict(lambda: [0, 0]))
for f in sorted(glob.glob(f"{run}/eval/*.json")):
    name = f.split("/")[-1][:-5]
    method = name.rsplit("-s", 1)[0]
    d = json.load(open(f))
    for e in d.get("episodes", []):
        if e.get("category") not in ("easy", "hard"):
            continue
        t = (e.get("goal") or {}).get("task")
        pol[method][t][0] += 1; pol[method][t][1] += bool(e.get("success"))
methods = sorted(pol)
print("task | imagined n | match | replay | " + " | ".join(methods))
for t in sorted(im):
    n, m, r = im[t]
    cells = []
    for meth in methods:
        a, b = pol[meth].get(t, [0, 0])
        cells.append(f"{100 * b / a:.0f}% ({a})" if a else "-")
    print(f"{t} | {n} | {100 * m / n:.0f}% | {100 * r / n:.0f}% | " + " | ".join(cells))
walls = [t for t in im if t.endswith("-wall")]
n = sum(im[t][0] for t in walls); r = sum(im[t][2] for t in walls)
print(f"wall tasks: imagined replay {r}/{n} = {100 * r / max(n, 1):.1f}%")
for meth in methods:
    a = sum(pol[meth].get(t, [0, 0])[0] for t in walls); b = sum(pol[meth].get(t, [0, 0])[1] for t in walls)
    print(f"wall tasks: {meth} {b}/{a} = {100 * b / max(a, 1):.1f}%")
