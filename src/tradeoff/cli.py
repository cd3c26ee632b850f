"""The `tradeoff` command: thin typer commands over the Python API, printed with rich."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tradeoff.errors import TradeoffError
from tradeoff.objectives import times

if TYPE_CHECKING:  # torch, optuna and onnx load inside the commands that use them: `--help` stays instant
    from tradeoff.config import Task
    from tradeoff.insight.monitor import MonitorResult

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Make a trained model cheaper to run, with the accuracy cost measured on held-out data.")
console = Console()
errors = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])

Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or tables.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
Storage = Annotated[str | None, typer.Option(help="The study's storage URL, replacing search.storage: a "
                                                  "PostgreSQL URL (postgresql+psycopg://user@host/database) that "
                                                  "`tradeoff worker` processes share.")]
AllowPickle = Annotated[bool, typer.Option("--allow-pickle", help="Trust and unpickle a .pt file that is not a "
                                                                  "plain state dict.")]


def user_errors(command: F) -> F:
    """A user's mistake is one line on stderr and exit code 2, never a traceback."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except TradeoffError as exc:
            errors.print(f"[bold red]error:[/] {escape(str(exc))}", markup=True, highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def _task(path: Path, allow_pickle: bool) -> Task:
    from tradeoff.config import load_task

    task = load_task(path)
    if allow_pickle:
        task = task.model_copy(update={"model": task.model.model_copy(update={"allow_pickle": True})})
    return task


def _bytes(n: int) -> str:
    return f"{n / 1e6:.3f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def _comparison(report: Any) -> Table:
    base, best = report.baseline, report.best
    table = Table(title=f"{report.name}: baseline vs best (test split, same process)")
    for column in ("", "baseline", "best", "ratio"):
        table.add_column(column, justify="right" if column else "left")
    name = report.metric["name"]
    table.add_row(name, f"{base.metric:.4f}", f"{best.metric:.4f}", f"drop {best.ratios.metric_drop:+.4f}")
    table.add_row(f"p50 latency ({base.latency_ms.setting()})", f"{base.latency_ms.p50:.4f} ms",
                  f"{best.latency_ms.p50:.4f} ms", times(best.ratios.speedup, "faster", "slower"))
    table.add_row("p95 latency", f"{base.latency_ms.p95:.4f} ms", f"{best.latency_ms.p95:.4f} ms", "")
    table.add_row("size", _bytes(base.size_bytes), _bytes(best.size_bytes),
                  times(best.ratios.size_reduction, "smaller", "larger"))
    table.add_row("size, zstd", _bytes(base.size_zstd_bytes), _bytes(best.size_zstd_bytes),
                  times(best.ratios.size_zstd_reduction, "smaller", "larger"))
    table.add_row("recipe", "as given", " → ".join(s["pass"] for s in best.recipe["steps"]) or "as given", "")
    table.add_row("runtime", base.running, best.running, "")
    return table


@app.command()
@user_errors
def optimize(task: Annotated[Path, typer.Argument(help="Task YAML file.")],
             out: Annotated[Path, typer.Option(help="Where run directories go.")] = Path("runs"),
             trials: Annotated[int | None, typer.Option(help="Override search.trials.")] = None,
             storage: Storage = None, quiet: Quiet = False, as_json: AsJson = False, allow_pickle: AllowPickle = False,
             strict: Annotated[bool, typer.Option(help="Exit with code 3 when the chosen model breaks a constraint "
                                                       "on the test split.")] = False,
             debug: Annotated[bool, typer.Option(help="Stop at the first failing candidate, with its traceback, "
                                                      "instead of recording it as a failed trial.")] = False) -> None:
    """Search recipes on validation, measure the chosen model on the test split, write runs/<name>/.

    What the libraries print goes to runs/<name>/log.txt; a failed trial's traceback to trials/<n>/error.txt. With
    --storage shared by `tradeoff worker` processes: measure what is left of the budget, finalize from every trial."""
    from tradeoff.optimize import optimize as run
    from tradeoff.rundir import RunDir
    from tradeoff.runlog import library_output_to

    spec = _task(task, allow_pickle)
    if trials is not None:
        spec = spec.model_copy(update={"search": spec.search.model_copy(update={"trials": trials})})
    with library_output_to(RunDir(out / spec.name).log, f"tradeoff optimize {task}"):
        result = run(spec, out=out, quiet=quiet or as_json, storage=storage, debug=debug)
    report = result.report.data
    broken = report.best.test_violations
    if as_json:
        print(json.dumps({"baseline": report.baseline.model_dump(mode="json"),
                          "best": report.best.model_dump(mode="json"), "choice": report.choice.model_dump(mode="json"),
                          "run_dir": str(result.run_dir)}))
    elif not quiet:
        _print_outcome(report, result.run_dir, result.report.html_path)
    if broken:  # said even with --quiet: a shipped model that breaks a constraint on test is never silent
        errors.print("[bold yellow]the chosen model breaks a constraint on the test split:[/] "
                     + "; ".join(f"{v.constraint} {v.value:.4g} > {v.limit:.4g}" for v in broken)
                     + " (chosen on validation; not chosen again on test)", highlight=False, soft_wrap=True)
        if strict:
            raise typer.Exit(3)


def _print_outcome(report: Any, run_dir: Path, html_path: Path) -> None:
    console.print(_comparison(report))
    console.print(f"trials: {report.search_stats.describe()}", markup=False, highlight=False)
    if report.binding is not None:
        b = report.binding
        console.print(f"[yellow]No candidate met the constraints; best is the baseline.[/] Binding constraint: "
                      f"{b.constraint} <= {b.limit:g}; nearest trial {b.nearest_trial} missed it by "
                      f"{b.missed_by if b.missed_by is None else f'{b.missed_by:.4g}'} on validation.")
    elif report.best.is_baseline:
        console.print("[yellow]No candidate beat the baseline by the choice rule; best is the baseline.[/]")
    console.print(f"chosen on validation by {report.choice.rule}", highlight=False)
    for warning in report.warnings:
        console.print(f"[yellow]warning:[/] {warning}")
    console.print(f"artifact: {run_dir / 'best'}\nreport:   {html_path}")


@app.command()
@user_errors
def worker(task: Annotated[Path, typer.Argument(help="Task YAML file, the same as the other workers'.")],
           storage: Storage = None, quiet: Quiet = False, allow_pickle: AllowPickle = False) -> None:
    """Join the task's study on a shared storage and measure trials until its budget (search.trials, counted over
    every worker) or this worker's search.timeout_s is spent.

    Writes no run directory: `tradeoff optimize task.yaml --storage <the same URL>` finalizes from every trial."""
    from tradeoff.worker import work

    done = work(_task(task, allow_pickle), storage=storage, quiet=quiet)
    if not quiet:
        console.print(f"measured {done.measured} trials; the study has {done.study_trials} of {done.budget}",
                      markup=False, highlight=False)


@app.command()
@user_errors
def train(task: Annotated[Path, typer.Argument(help="Task YAML file; its train: section says how.")],
          out: Annotated[Path, typer.Option(help="Where run directories go.")] = Path("runs"),
          resume: Annotated[bool, typer.Option(help="Continue from runs/<name>/train_state.pt, written after every "
                                                    "epoch.")] = False,
          quiet: Quiet = False, as_json: AsJson = False, allow_pickle: AllowPickle = False) -> None:
    """Train the task's torch model; write runs/<name>/model.safetensors, history.json, train.json, report.html.

    Several processes: `torchrun --nproc-per-node 2 -m tradeoff train task.yaml` (data-parallel, DDP)."""
    from tradeoff.training.distributed import world
    from tradeoff.training.run import train as run

    done = run(_task(task, allow_pickle), out=out, resume=resume, quiet=quiet or as_json)
    if not world().main:
        return
    result, summary = done.result, json.loads((done.run_dir / "train.json").read_text())
    if as_json:
        print(json.dumps({**summary, "run_dir": str(done.run_dir)}))
    elif not quiet:
        stopped = ", stopped early" if result.stopped_early else ""
        console.print(f"trained {result.epochs_run} epochs{stopped}; kept the weights of epoch {result.best_epoch}\n"
                      f"{summary['metric']['name']}: validation {done.val_metric:.4f}, test {done.test_metric:.4f}\n"
                      f"model:  {done.run_dir / 'model.safetensors'}\nreport: {done.run_dir / 'report.html'}",
                      markup=False, highlight=False, soft_wrap=True)


@app.command()
@user_errors
def tune(task: Annotated[Path, typer.Argument(help="Task YAML file; its tune: section says what is tuned.")],
         out: Annotated[Path, typer.Option(help="Where run directories go.")] = Path("runs"),
         storage: Annotated[str | None, typer.Option(help="The study's storage, in place of search.storage: an RDB "
                                                          "URL shares it with `tradeoff worker` processes.")] = None,
         quiet: Quiet = False, as_json: AsJson = False, allow_pickle: AllowPickle = False) -> None:
    """Tune training and model options on validation; train the best on train+val and score it on test once.

    Writes runs/<name>/: tune.json, report.html, model.safetensors and tuned.yaml, a task file of the tuned model
    that `tradeoff optimize runs/<name>/tuned.yaml` takes as it is."""
    from tradeoff.tuning.run import tune as run

    done = run(_task(task, allow_pickle), out=out, storage=storage, quiet=quiet or as_json)
    summary = _search_summary(done.run_dir / "tune.json", done.tuned_task, as_json or quiet, as_json,
                              ("best", "final", "compute", "retimed"))
    if summary is None:
        return
    counted = sum(summary["compute"][state] for state in ("complete", "pruned", "failed"))
    table = Table(title=f"{done.run_dir.name}: the best of {counted} trials (trial {done.trial})")
    table.add_column("parameter")
    table.add_column("value", justify="right")
    for key, value in done.params.items():
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    console.print(table)
    lines = [f"{summary['metric']['name']}: validation {done.val_metric:.4f} (trained on train), test "
             f"{done.test_metric:.4f} (retrained on train+val for {summary['final']['epochs']} epochs, scored once)",
             f"compute: {done.epochs_trained} epochs trained, {summary['compute']['pruned']} trials pruned",
             *_dropped_on_retiming(summary), f"report:  {done.run_dir / 'report.html'}"]
    if done.tuned_task:
        lines.append(f"next:    tradeoff optimize {done.tuned_task}")
    console.print("\n".join(lines), markup=False, highlight=False, soft_wrap=True)


@app.command()
@user_errors
def nas(task: Annotated[Path, typer.Argument(help="Task YAML file; its nas: section is the architecture space.")],
        out: Annotated[Path, typer.Option(help="Where run directories go.")] = Path("runs"),
        storage: Annotated[str | None, typer.Option(help="The study's storage, in place of search.storage: an RDB "
                                                         "URL shares it with `tradeoff worker` processes.")] = None,
        quiet: Quiet = False, as_json: AsJson = False) -> None:
    """Search architectures: each trained briefly on train and judged on validation, its latency measured on the
    task's runtime; the Pareto front, the task's own model as reference, and the chosen one trained on train+val
    and scored on test once.

    Writes runs/<name>/: nas.json, report.html, model.safetensors and nas.yaml, a task file of the chosen
    architecture that `tradeoff optimize runs/<name>/nas.yaml` takes as it is."""
    from tradeoff.nas.space import Architecture
    from tradeoff.tuning.run import nas as run

    done = run(_task(task, allow_pickle=False), out=out, storage=storage, quiet=quiet or as_json)
    summary = _search_summary(done.run_dir / "nas.json", done.tuned_task, as_json or quiet, as_json,
                              ("best", "final", "compute", "front", "reference", "reranked", "retimed"))
    if summary is None:
        return
    name, first = summary["metric"]["name"], _first_latency(done.values)
    chosen = Architecture(done.architecture["factory"], done.architecture["options"])
    lines = [f"chosen: trial {done.trial}, {chosen}",
             f"{name}: validation {done.values['metric']:.4f}, test {done.test_metric:.4f} (trained on train+val, "
             f"scored once); {first}, {int(done.values.get('params') or 0):,} parameters",
             f"Pareto front (validation): trials {', '.join(map(str, done.front))}"]
    if done.reranked:
        lines.append("rerank (held out after the longer training): " + ", ".join(
            f"trial {r['trial']} {r['search_metric']:.4f} -> {r['metric']:.4f}" for r in done.reranked)
            + (f"; reference {done.reference['rerank_metric']:.4f}" if done.reference else ""))
        if done.reference and done.reference["rerank_beats_all"]:
            lines.append("warning: by the rerank the task's own model is better than every architecture found; "
                         "the chosen one is only the best the search found")
    if done.reference is not None:
        ref = done.reference
        lines.append(f"reference (the task's model): {name} validation {ref['values']['metric']:.4f}, test "
                     f"{ref['test_metric']:.4f}; {_first_latency(ref['values'])}, "
                     f"{int(ref['values'].get('params') or 0):,} parameters; dominated by trials "
                     f"{', '.join(map(str, ref['dominated_by'])) or 'none'}")
    lines.append(f"compute: {done.epochs_trained} epochs trained, {summary['compute']['pruned']} trials pruned")
    lines.extend(_dropped_on_retiming(summary))
    lines.append(f"report:  {done.run_dir / 'report.html'}")
    if done.tuned_task:
        lines.append(f"next:    tradeoff optimize {done.tuned_task}")
    console.print("\n".join(lines), markup=False, highlight=False, soft_wrap=True)


def _search_summary(path: Path, next_task: Path | None, silent: bool, as_json: bool,
                    keys: tuple[str, ...]) -> dict[str, Any] | None:
    """A tune or nas run's summary file, for the terminal; None where nothing more is to be printed (--quiet, or
    --json, which prints `keys` of it, the run directory and the task file it derived, here)."""
    summary = json.loads(path.read_text())
    if as_json:
        print(json.dumps({"run_dir": str(path.parent), "next_task": str(next_task) if next_task else None,
                          **{k: summary[k] for k in keys}}))
    return None if silent else summary


def _dropped_on_retiming(summary: dict[str, Any]) -> list[str]:
    """A line where one of the best trials broke a latency ceiling when timed again before the choice."""
    dropped = [f"{r['trial']} ({', '.join(r['over'])})" for r in summary["retimed"] if r["over"]]
    return [f"timed again: trials {', '.join(dropped)} broke a latency ceiling and gave their place to the next "
            f"best"] if dropped else []


def _first_latency(values: dict[str, Any]) -> str:
    key = next((k for k in values if k.startswith("latency_ms.p50@b")), None)
    return f"p50 {values[key]:.4f} ms at batch {key.rpartition('@b')[2]}" if key else "latency not timed"


@app.command("distill-data")
@user_errors
def distill_data(task: Annotated[Path, typer.Argument(help="Task YAML file; its training split is distilled.")],
                 per_class: Annotated[int, typer.Option(help="Samples per class in the synthetic set.")] = 10,
                 method: Annotated[str, typer.Option(help="dm (distribution matching), herding (a coreset of real "
                                                          "samples) or random (real samples).")] = "dm",
                 out: Annotated[Path, typer.Option(help="Folder for synthetic.npz, val.npz, test.npz and "
                                                        "distill.json.")] = Path("distilled"),
                 seed: Annotated[int, typer.Option(help="Seeds the samples, embedders and judge model.")] = 0,
                 iterations: Annotated[int, typer.Option(help="dm: steps of distribution matching.")] = 100,
                 lr: Annotated[float, typer.Option(help="dm: learning rate of the synthetic images.")] = 1.0,
                 real_per_class: Annotated[int, typer.Option(help="dm: real images per class in each step.")] = 32,
                 augment: Annotated[bool, typer.Option(help="Images: DSA's warp (scale, rotation, shift) on each "
                                                            "class's real and synthetic images alike in dm, and on "
                                                            "the judge's training, as the DM paper measures.")] = False,
                 train_steps: Annotated[int, typer.Option(help="Steps the judge model trains on the synthetic "
                                                               "set.")] = 300,
                 quiet: Quiet = False, as_json: AsJson = False) -> None:
    """Distil the task's training split to a few samples per class; write them as a data file with the task's
    validation and test splits beside it, and the test accuracy of a fresh ConvNet trained on them alone."""
    from tradeoff.training.synthetic_data import distill_data as run

    done = run(task, per_class=per_class, method=method, out=out, seed=seed, iterations=iterations,  # type: ignore[arg-type]
               lr=lr, real_per_class=real_per_class, augment=augment, train_steps=train_steps, quiet=quiet or as_json)
    if as_json:
        print(json.dumps(done.summary))
    elif not quiet:
        console.print(f"{done.summary['samples']} samples ({per_class} per class, {method}) from "
                      f"{done.summary['distilled_from']}: {out / 'synthetic.npz'}\n"
                      f"test accuracy of a {done.summary['judge']['model']} trained on them alone: "
                      f"{done.test_accuracy:.4f}\ntrain on them with the data section "
                      f"{json.dumps(done.data_section)}", markup=False, highlight=False, soft_wrap=True)


@app.command()
@user_errors
def sensitivity(task: Annotated[Path, typer.Argument(help="Task YAML file; search.sensitivity says what is applied "
                                                          "(default: int8, 4-bit weights, pruning 50/80/95%).")],
                out: Annotated[Path, typer.Option(help="Where run directories go.")] = Path("runs"),
                quiet: Quiet = False, as_json: AsJson = False, allow_pickle: AllowPickle = False) -> None:
    """The metric drop on validation when one layer alone is quantized or pruned: runs/<name>/sensitivity.json and
    sensitivity.html."""
    from tradeoff.insight.sensitivity import sensitivity as run
    from tradeoff.rundir import RunDir
    from tradeoff.runlog import library_output_to

    spec = _task(task, allow_pickle)
    run_dir = RunDir(out / spec.name)
    with library_output_to(run_dir.log, f"tradeoff sensitivity {task}"):
        found = run(spec, out=out, quiet=quiet or as_json)
    if as_json:
        print(json.dumps(found.as_dict()))
        return
    if quiet:
        return
    table = Table(title=f"{found.metric} drop on validation, one layer at a time (baseline {found.baseline:.4f})")
    table.add_column("layer", no_wrap=True)
    table.add_column("params", justify="right")
    for treatment in found.treatments:
        table.add_column(treatment, justify="right", overflow="fold")
    for layer in found.layers:
        table.add_row(f"{layer.layer} ({layer.kind})", f"{layer.params:,}",
                      *("–" if d is None else f"{d:+.4f}" for d in (layer.drops[t] for t in found.treatments)))
    console.print(table)
    for note in found.notes:
        console.print(f"note: {note}", markup=False, highlight=False)
    console.print(f"report: {run_dir.sensitivity_html}", markup=False, highlight=False)


@app.command()
@user_errors
def apply(recipe: Annotated[Path, typer.Argument(help="recipe.yaml to replay.")],
          task: Annotated[Path, typer.Option(help="Task file giving the model and data.")],
          out: Annotated[Path, typer.Option(help="Directory to write the artifact into.")] = Path("applied"),
          quiet: Quiet = False, as_json: AsJson = False, allow_pickle: AllowPickle = False) -> None:
    """Replay a recipe on the task's model and write the artifact; prints its test metric."""
    from tradeoff.replay import apply as run
    from tradeoff.report.build import measured

    outcome = run(recipe, _task(task, allow_pickle), out=out).measured
    if as_json:
        print(json.dumps(measured(outcome).model_dump(mode="json")))
    elif not quiet:
        console.print(f"{outcome.metric:.6f} test metric; artifact written to {out}")


@app.command()
@user_errors
def evaluate(task: Annotated[Path, typer.Argument(help="Task file giving the data, metric and runtime.")],
             model: Annotated[Path | None, typer.Option(help="An artifact folder (best/) or an .onnx file; "
                                                             "default: the task's own model.")] = None,
             split: Annotated[str, typer.Option(help="val or test.")] = "test",
             as_json: AsJson = False, allow_pickle: AllowPickle = False) -> None:
    """Metric, latency, size and compute of any model or artifact, measured like the search measures."""
    from tradeoff.replay import evaluate as run
    from tradeoff.report.build import measured as measured_entry

    measured = measured_entry(run(_task(task, allow_pickle), model=model, split=split))
    if as_json:
        print(json.dumps(measured.model_dump(mode="json")))
        return
    table = Table(title=f"{model or 'task model'} on {split} ({measured.runtime})")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("metric", f"{measured.metric:.6f}")
    for batch, latency in measured.latency_by_batch.items():
        table.add_row(f"latency batch {batch}", f"p50 {latency.p50:.4f} ms, p95 {latency.p95:.4f} ms")
    for batch, cost in measured.cost_by_batch.items():
        if cost.usd_per_million is not None:
            table.add_row(f"USD per million predictions, batch {batch}", f"{cost.usd_per_million:.4g}")
        if (energy := cost.energy_per_prediction) is not None:
            table.add_row(f"energy per prediction, batch {batch}", f"{energy.joules:.3g} J ({energy.source})")
    table.add_row("size", f"{_bytes(measured.size_bytes)} ({_bytes(measured.size_zstd_bytes)} zstd)")
    table.add_row("parameters", f"{measured.params:,} ({measured.nonzero_params:,} non-zero)")
    table.add_row("MACs per sample", "unknown" if measured.macs is None else f"{measured.macs:,}")
    console.print(table)


@app.command()
@user_errors
def report(run_dir: Annotated[Path, typer.Argument(help="A run directory holding report.json.")]) -> None:
    """Render report.html again from report.json."""
    from tradeoff.replay import rerender

    console.print(f"report: {rerender(run_dir)}")


@app.command()
@user_errors
def monitor(run_dir: Annotated[Path, typer.Argument(help="A run directory written by tradeoff optimize.")],
            data: Annotated[Path, typer.Option(help="New data: a .csv with the training columns (target optional), "
                                                   "an .npz with x, or texts (.txt, .jsonl) for a text task.")],
            task: Annotated[Path | None, typer.Option(help="The task file, where the run was given Python "
                                                           "objects.")] = None,
            quiet: Quiet = False, as_json: AsJson = False) -> None:
    """Input drift against the training data, and the optimized model's agreement with the original on new data
    against that on test. Exit code 0 when fine, 1 on drift or disagreement (2 on a mistake)."""
    from tradeoff.insight.monitor import monitor as run

    result = run(run_dir, data, task=task)
    if as_json:
        print(json.dumps(result.to_dict()))
    elif not quiet:
        _print_monitor(result)
    raise typer.Exit(1 if result.alarm else 0)


def _print_monitor(result: MonitorResult) -> None:
    agreement, drift = result.agreement, result.drift
    table = Table(title=f"{result.run_dir.name}: {drift.rows} new rows")
    for column in ("check", "now", "reference", "verdict"):
        table.add_column(column, justify="right" if column in ("now", "reference") else "left")
    table.add_row(f"agreement ({agreement.measure})", f"{agreement.now:.4f}",
                  f"{agreement.at_test:.4f} on test (least {agreement.least_expected:.4f})",
                  "DISAGREES" if agreement.disagrees else "ok")
    whole = drift.whole
    table.add_row("drift: MMD of whole rows", f"p {whole.p_value:.3g}", f"alarm below {whole.level:g}",
                  "DRIFT" if whole.drifted else "ok")
    for f in sorted(drift.features, key=lambda f: f.p_holm)[:10]:
        table.add_row(f"drift: {f.name} ({f.test})", f"p {f.p_holm:.3g} (Holm)", f"PSI {f.psi:.3f} {f.psi_band}",
                      "DRIFT" if f.drifted else "ok")
    if result.metric is not None:
        table.add_row(f"{result.metric.name} on the targets", f"{result.metric.optimized:.4f}",
                      f"{result.metric.original:.4f} original", "")
    console.print(table)
    console.print(f"{'ALARM' if result.alarm else 'fine'}; report: {result.html_path}", highlight=False)


@app.command()
@user_errors
def explain(run_dir: Annotated[Path, typer.Argument(help="runs/<name> written by tradeoff optimize.")],
            task: Annotated[Path | None, typer.Option(help="The task file naming the run's model and data, where "
                                                           "the run was given Python objects.")] = None,
            quiet: Quiet = False, as_json: AsJson = False) -> None:
    """Surrogate rules of the original and the optimized classifier with their fidelity on test, and the agreement
    of their attributions; writes explain.json and explain.html into the run directory."""
    from tradeoff.insight.explain import explain as run
    from tradeoff.rundir import RunDir

    done = run(run_dir, task)
    if as_json:
        print(done.model_dump_json())
        return
    if quiet:
        return
    table = Table(title=f"{done.name}: surrogate rules fitted to each model's predictions")
    for column in ("model", "surrogate", "rules", "fidelity (test)"):
        table.add_column(column, justify="right" if column in ("rules", "fidelity (test)") else "left")
    for m in done.models:
        for s in m.surrogates:
            table.add_row(f"{m.model} ({m.format})", s.kind, str(len(s.rules)),
                          f"{100 * s.fidelity:.1f}% of {done.test_samples}")
    console.print(table)
    a = done.attributions
    lines = [f"attributions ({a.method}, {a.samples} test samples): Spearman "
             f"{'–' if a.spearman is None else f'{a.spearman:.3f}'} between the two models' feature importances, "
             f"top-{len(a.top['original'])} overlap {100 * a.top_k_overlap:.0f}%"]
    lines += [f"  top features, {name}: {', '.join(features)}" for name, features in a.top.items()]
    for m in done.models:
        for s in m.surrogates:
            lines += [f"{m.model}, {s.kind} ({100 * s.fidelity:.1f}% fidelity):"] + [f"  {r.text}" for r in s.rules]
    console.print("\n".join(lines), markup=False, highlight=False, soft_wrap=True)
    for note in done.notes:
        console.print(f"[yellow]note:[/] {escape(note)}", highlight=False, soft_wrap=True)
    paths = RunDir(run_dir)
    console.print(f"explain: {paths.explain_json}\n         {paths.explain_html}", markup=False, highlight=False)


@app.command()
@user_errors
def passes(plugin: Annotated[list[str] | None, typer.Option(help="A module to import first for the passes it "
                                                                  "registers (as search.plugins does).")] = None,
           ) -> None:
    """Every registered pass: its stage, the formats it takes, its tags, what is searched, its options."""
    from tradeoff.passes import load_plugins, registered_passes

    load_plugins(tuple(plugin or ()), (Path.cwd(),))
    table = Table(title="passes")
    table.add_column("pass", no_wrap=True)  # the name a recipe uses, whole on any terminal
    for column in ("stage", "accepts", "tags", "searched", "config (default)"):
        table.add_column(column, overflow="fold")
    for name, cls in registered_passes().items():
        fields = ", ".join(f"{k}={v.default!r}" for k, v in cls.Config.model_fields.items() if k != "version")
        table.add_row(name, cls.stage, ", ".join(sorted(cls.accepts)), ", ".join(sorted(cls.tags)),
                      ", ".join(cls.space) or "-", fields)
    console.print(table)


@app.command()
def env() -> None:
    """Versions, CPU and its int8/bf16 instructions: paste this into bug reports."""
    from tradeoff.env import collect_env

    print(json.dumps(collect_env(), indent=2))
