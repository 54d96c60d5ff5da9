"""``edgesim workloads``: the model zoo, the spec grammar, and what one training step of a model costs."""
from __future__ import annotations

import math

import numpy as np

from simulator.files import emit_json
from simulator.units import human_bytes
from workloads.datasets import LABEL_NOISE_KINDS, STORIES, StoryOptions

from .common import add_command, exit_codes, format_table

_STORY = StoryOptions()  # the stories' defaults: one source (workloads.datasets)

GRAMMAR = """\
A workload is a zoo name or a spec string (activations are ReLU, fused into the conv/dense before them):

  mlp:IN-H1-...-OUT          dense layers                          mlp:64-32-10
  cnn:HxWxC-PART-...-dOUT    2-D CNN on an H x W x C image         cnn:8x8x1-c8k3-p2-c16k3-gap-d10
  cnn1d:LxC-PART-...-dOUT    1-D CNN on L steps of C channels      cnn1d:64x3-c16k5-p2-c32k3-gap-d6

  PART  cNkK[sS][same]  conv: N filters, K x K kernel (1 x K in cnn1d), stride S, 'same' padding
        dwK[sS][same]   depthwise conv, K x K
        pK / aK         max / average pool K x K, stride K
        gap             global average pool
        dN              dense, N units (flattens first); the last part gives the classes

Data: 64 inputs or 8x8x1 train on the 8x8 digits, 16 or 4x4x1 on 4x4 digits, 64x3 on the synthetic
accelerometer. A bad spec exits 2 naming the bad part (e.g. mlp:64--10, cnn:8x8x1-c0k3)."""


def register(sub) -> None:
    p = add_command(
        sub, "workloads", help="list the model zoo and the spec grammar",
        description="List the model zoo with what one training step costs (parameters, MACs, peak live bytes\n"
                    "of the step's own buffers, at batch 1, all from a real traced step), or describe one zoo\n"
                    "name or spec layer by layer; with --train, personalise it through the trace and report\n"
                    "user accuracy and retention before/after.\n\n" + GRAMMAR,
        example="edgesim workloads cnn:8x8x1-c8k3-p2-c16k3-gap-d10\n"
                "  edgesim workloads lenet-digits --train 80 --batch 8 --techniques instance_filter=0.2\n"
                "  edgesim workloads lenet-digits --train 400 --batch 8 --story noisy-labels --label-noise 0.4 "
                "--techniques self_adaptive=0.9",
        exits=exit_codes("0 listed or described"),
    )
    p.add_argument("workload", nargs="?", metavar="WORKLOAD",
                   help="a zoo name or spec to describe layer by layer (default: list the zoo)")
    p.add_argument("--batch", type=int, default=1, help="batch size of the traced step")
    p.add_argument("--train", type=int, default=0, metavar="STEPS",
                   help="with WORKLOAD: personalise it for STEPS traced steps and report accuracy before/after")
    p.add_argument("--story", default="new-class", choices=STORIES,
                   help="with --train: learn a new class, adapt to shifted data, train from scratch, or learn "
                        "from imperfect data (wrong labels, a mostly unlabelled class-by-class stream, sensor noise)")
    p.add_argument("--label-noise", type=float, default=_STORY.label_noise, metavar="P",
                   help="story noisy-labels: fraction of the user's labels that are wrong, in [0, 1)")
    p.add_argument("--label-noise-kind", default=_STORY.label_noise_kind, choices=LABEL_NOISE_KINDS,
                   help="story noisy-labels: wrong labels go to any other class or to the confusable one")
    p.add_argument("--label-fraction", type=float, default=_STORY.label_fraction, metavar="F",
                   help="story unlabelled: fraction of the stream that comes with a label, in [0, 1)")
    p.add_argument("--noise-level", type=float, default=_STORY.noise_level, metavar="SIGMA",
                   help="story input-noise: scale of the sensor's dark-signal noise the stream rises to, in [0, 1)")
    p.add_argument("--techniques", default="", metavar="K=V,...",
                   help="with --train: technique switches, e.g. instance_filter=0.2,error_map_prune=0.2")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(func=run)


def describe(workload: str, batch: int = 1) -> dict:
    """Layers, parameters, MACs and one traced step's cost for a zoo name or spec (seeded initial weights)."""
    import workloads as W
    from workloads.datasets import DATASETS

    model = W.build_model(workload)
    spec = model.spec
    entry = W.zoo().get(workload)
    layers = []
    for ly in model.layers:
        layers.append({"name": ly.name, "type": type(ly).__name__, "out_shape": list(ly.out_shape),
                       "params": int(sum(p.size for p in ly.params)), "macs_forward": int(ly.forward_macs(1))})
    out = {"name": entry.name if entry else None, "spec": spec.text, "input_shape": list(spec.input_shape),
           "num_classes": spec.num_classes, "params": int(sum(p.size for p in model.parameters())),
           "param_bytes_f32": int(sum(p.nbytes for p in model.parameters())),
           "macs_forward": int(model.macs_forward(1)), "layers": layers,
           "dataset": entry.dataset if entry else None, "description": entry.description if entry else None}
    try:
        job = W.make_job(workload, pretrain=False, story="plain")
    except ValueError as e:
        if "no default dataset" not in str(e):
            raise
        out["step"] = None
        out["note"] = f"no bundled data set fits this input shape ({', '.join(DATASETS)}); trace not run"
        return out
    out["dataset"] = job.dataset
    s = job.labelled_stream()
    xs, ys = zip(*[next(s) for _ in range(batch)], strict=True)
    ops, _ = W.collect(job.train_step(np.stack(xs), np.array(ys)))
    summ = W.check_trace(ops, job.persistent_tensors())
    out["step"] = {"batch": batch, "ops": summ.ops, "macs": summ.macs,
                   "peak_live_bytes": summ.peak_live_bytes,
                   "persistent_bytes": int(sum(t.nbytes for t in job.persistent_tensors()))}
    return out


def parse_techniques(text: str):
    """``k=v,k=v`` -> Techniques; values are numbers, true/false or words (update=last-k)."""
    from workloads import Techniques

    d: dict = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "=" not in part:
            raise ValueError(f"--techniques: {part!r} is not KEY=VALUE")
        k, v = (x.strip() for x in part.split("=", 1))
        if v.lower() in ("true", "false"):
            d[k] = v.lower() == "true"
        else:
            try:
                d[k] = int(v) if v.lstrip("-").isdigit() else float(v)
            except ValueError:
                d[k] = v
            if isinstance(d[k], float) and not math.isfinite(d[k]):
                raise ValueError(f"--techniques: {k} must be a finite number (got {v!r})")
    try:
        return Techniques.from_dict(d, where="--techniques")
    except ValueError as e:     # name the flag: "--techniques: techniques.buffer must be one of ... (got 'lifo')"
        raise ValueError(str(e) if str(e).startswith("--techniques") else f"--techniques: {e}") from None


def story_options(args):
    """The imperfect-data story options from the flags (exit 2 naming the flag and value if bad)."""
    from workloads.datasets import StoryOptions

    return StoryOptions(args.label_noise, args.label_noise_kind, args.label_fraction, args.noise_level).check(
        {"label_noise": "--label-noise", "label_noise_kind": "--label-noise-kind",
         "label_fraction": "--label-fraction", "noise_level": "--noise-level"})


def personalise(workload: str, steps: int, batch: int, story: str, techniques, seed: int = 0,
                options=None) -> dict:
    """Train a job for ``steps`` traced steps; accuracy before/after, total MACs, largest step peak."""
    import itertools

    from tqdm import tqdm

    import workloads as W

    job = W.make_job(workload, story=story, techniques=techniques, seed=seed, story_options=options)
    before = job.evaluate()
    stream = job.labelled_stream()
    macs = peak = 0
    losses = []
    for i in tqdm(range(steps), desc=f"training {job.name}", unit="step", leave=False):
        xs, ys = zip(*itertools.islice(stream, batch), strict=True)
        ops, loss = W.collect(job.train_step(np.stack(xs), np.array(ys)))
        macs += sum(o.macs for o in ops)
        losses.append(loss)
        if i % 20 == 0 or i == steps - 1:
            peak = max(peak, W.check_trace(ops, job.persistent_tensors()).peak_live_bytes)
    from workloads.imperfect import STATE_NAMES

    state = sum(t.nbytes for t in job.persistent_tensors() if t.name.startswith(STATE_NAMES))
    out = {"spec": job.name, "dataset": job.dataset, "story": story, "steps": steps, "batch": batch,
           "techniques": techniques.active(), "lr": job.lr, "before": before, "after": job.evaluate(),
           "macs": macs, "peak_live_bytes": peak, "first_loss": losses[0], "last_loss": losses[-1]}
    if state:
        out["technique_state_bytes"] = state
    if story in W.datasets.BASE_STORY and options is not None:
        from dataclasses import asdict

        out["story_options"] = asdict(options)
    return out


def run(args) -> int:
    import workloads as W

    if args.batch < 1:
        raise ValueError(f"--batch must be >= 1 (got {args.batch})")
    if args.train < 0:
        raise ValueError(f"--train must be >= 0 (got {args.train})")
    if args.train:
        if not args.workload:
            raise ValueError("--train needs a WORKLOAD (a zoo name or spec)")
        techniques = parse_techniques(args.techniques)
        if techniques.buffer is not None and techniques.buffer_size < args.batch:
            raise ValueError(f"--techniques: buffer_size must be >= --batch {args.batch} "
                             f"(got {techniques.buffer_size})")
        r = personalise(args.workload, args.train, args.batch, args.story, techniques,
                        options=story_options(args))
        if args.json:
            emit_json(r)
            return 0
        b, a = r["before"], r["after"]
        print(f"{r['spec']} on {r['dataset']}, story {r['story']}, {r['steps']} steps x batch {r['batch']}, "
              f"SGD lr {r['lr']:g}, techniques: {', '.join(r['techniques']) or 'none'}")
        print(f"user accuracy      {b['user_accuracy'] * 100:5.1f} % -> {a['user_accuracy'] * 100:5.1f} %")
        print(f"retention (old)    {b['retention_accuracy'] * 100:5.1f} % -> {a['retention_accuracy'] * 100:5.1f} %")
        print(f"loss               {r['first_loss']:.3f} -> {r['last_loss']:.3f} nats")
        print(f"{r['macs']:,} MACs in total; largest step peak live {human_bytes(r['peak_live_bytes'])}"
              + (f"; technique state {human_bytes(r['technique_state_bytes'])} kept for the run"
                 if "technique_state_bytes" in r else ""))
        return 0
    if args.workload:
        d = describe(args.workload, args.batch)
        if args.json:
            emit_json(d)
            return 0
        print(f"{d['spec']}" + (f"  ({d['name']}: {d['description']})" if d["name"] else ""))
        rows = [[ly["name"], ly["type"], "x".join(map(str, ly["out_shape"])), ly["params"], ly["macs_forward"]]
                for ly in d["layers"]]
        print(format_table(["layer", "type", "output", "params", "MACs fwd (batch 1)"], rows))
        print(f"\n{d['params']} parameters ({human_bytes(d['param_bytes_f32'])} float32), "
              f"{d['macs_forward']} forward MACs per sample")
        if d["step"]:
            st = d["step"]
            print(f"one training step at batch {st['batch']} on {d['dataset']}: {st['macs']} MACs in {st['ops']} ops, "
                  f"peak live {human_bytes(st['peak_live_bytes'])} on top of {human_bytes(st['persistent_bytes'])} "
                  "persistent (weights, biases, SGD momentum)")
        else:
            print(d["note"])
        return 0
    entries = [describe(name, args.batch) for name in W.zoo()]
    if args.json:
        emit_json({"workloads": entries, "grammar": GRAMMAR})
        return 0
    rows = [[e["name"], e["spec"], e["dataset"], e["params"], human_bytes(e["param_bytes_f32"]), e["macs_forward"],
             e["step"]["macs"], human_bytes(e["step"]["peak_live_bytes"])] for e in entries]
    print(format_table(["name", "spec", "data", "params", "f32 size", "MACs/infer", f"MACs/step (b={args.batch})",
                        "step peak live"], rows))
    print("\n" + GRAMMAR)
    return 0
