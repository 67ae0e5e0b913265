"""Fork one method's simulation runs into another method's, up to a round where both are the same.

Two methods that pick the same batches up to round R (``auto`` and ``auto+low_budget=1000`` below
100 labels: both run MaxHerding + uncertainty there) need not train those rounds twice: copy the
first method's run directory and its curve and slice rows up to round R under the second method's
name, write the second method's options into the copy's alloop.toml, and let
``label_efficiency.py --methods A,B --rounds N`` continue both from round R + 1. The copy is exact:
the rounds copied are the ones the second method would have run itself.

    python benchmarks/fork_run.py --out /tmp/le_orchard --seeds 3 4 --source auto \\
        --target auto+low_budget=1000 --through 3
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import pandas as pd

from alloop import atomic
from alloop.project import Project
from alloop.simulate import MethodSpec, _run_name, _set_method_options


def fork(out: Path, seed: int, source: str, target: str, through: int) -> None:
    src = out / "runs" / f"seed-{seed}" / _run_name(source)
    dst = out / "runs" / f"seed-{seed}" / _run_name(target)
    if dst.exists():
        print(f"seed {seed}: {dst} exists already, left as it is")
        return
    with Project.open(src, lock=False) as project:
        its = {it.n: it.status for it in project.store.iterations()}
    if any(n > through for n in its) or its.get(through) != "done":
        raise SystemExit(f"{src}: needs round {through} done and nothing after it; it has {its}")
    for name, key in (("curves.csv", ["seed", "round"]), ("slices.csv", ["seed", "round"])):
        path = out / name
        if not path.exists():
            continue
        rows = pd.read_csv(path)
        if ((rows["method"] == target) & (rows["seed"] == seed)).any():
            raise SystemExit(f"{path}: holds rows of {target} seed {seed} already; remove them or the run")
        mine = rows[(rows["method"] == source) & (rows["seed"] == seed) & (rows["round"] <= through)].copy()
        if name == "curves.csv" and sorted(mine["round"]) != list(range(1, through + 1)):
            raise SystemExit(f"{path}: {source} seed {seed} lacks rows for rounds 1..{through}")
        mine["method"] = target
        atomic.write_text(path, pd.concat([rows, mine]).sort_values(["method", *key]).to_csv(index=False))
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".alloop.lock"))
    _set_method_options(dst, MethodSpec.parse(target).options)
    print(f"seed {seed}: {source} rounds 1..{through} copied to {target}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="the label_efficiency.py --out folder")
    p.add_argument("--seeds", type=int, nargs="+", required=True)
    p.add_argument("--source", required=True, help="the method whose runs are copied")
    p.add_argument("--target", required=True, help="the method spec the copies continue as")
    p.add_argument("--through", type=int, required=True, help="the last round both methods share")
    args = p.parse_args()
    for seed in args.seeds:
        fork(args.out, seed, args.source, args.target, args.through)


if __name__ == "__main__":
    main()
