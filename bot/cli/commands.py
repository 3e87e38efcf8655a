"""The ``npo`` command: builds Settings once and hands it to the sub-command."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError
from pydantic_settings import SettingsError

from bot.cli import playbooks as playbooks_cli
from bot.cli.progress import progress_bar
from bot.logs import configure_logging
from bot.settings import Settings
from core.policy import PolicyError
from core.simulator import VARIANTS, OperatorModel, SimConfig

EXIT_USAGE = 2
log = logging.getLogger("npo.cli")


def _fail(message: str, code: int = 1) -> int:
    print(f"npo: error: {message}", file=sys.stderr)
    return code


def _cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    from bot.governance.policies import read_policy_modules
    from bot.reporting.simulation import run_all, summary_document, write_outputs

    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        return _fail(
            f"--variants: unknown {', '.join(unknown)}; choose from {', '.join(VARIANTS)}",
            EXIT_USAGE,
        )
    try:
        config = SimConfig(
            episodes=args.episodes,
            tick_every=args.tick_every,
            operator=OperatorModel(args.operator),
        )
    except ValueError as exc:
        return _fail(str(exc), EXIT_USAGE)
    if args.seeds < 1:
        return _fail("--seeds: must be >= 1", EXIT_USAGE)
    modules = read_policy_modules(args.policies) if args.policies else None
    seeds = list(range(args.seed_base, args.seed_base + args.seeds))
    total = len(variants) * len(seeds)
    bar = progress_bar(total, "simulate", "run")
    started = time.perf_counter()
    runs = run_all(variants, seeds, config, modules, args.workers, lambda _r: bar.advance())
    bar.close()
    elapsed = time.perf_counter() - started
    summary = summary_document(runs, config, args.seeds)
    if args.out:
        write_outputs(runs, args.out, summary)
    if args.json:
        print(json.dumps(summary))
        return 0
    print(
        f"operator {config.operator.value}, {args.seeds} seed(s) × {args.episodes} episodes; "
        "utility per incident with its 95% interval over seeds"
    )
    print(
        f"{'variant':17s} {'utility':>8s} {'95% interval':>18s} {'help':>6s} {'override':>8s} "
        f"{'retrains':>8s} {'fidelity':>8s} {'base':>6s} {'κ':>6s}"
    )
    for name, row in summary["variants"].items():  # type: ignore[attr-defined]
        low, high = row["utility_ci"]
        print(
            f"{name:17s} {row['utility']:8.3f} {f'[{low:.3f}, {high:.3f}]':>18s} "
            f"{row['help_rate']:6.3f} {row['override_rate']:8.3f} {row['retrains']:8.1f} "
            f"{row['meta_fidelity']:8.3f} {row['meta_base_rate']:6.3f} {row['meta_kappa']:6.3f}"
        )
    episodes = total * args.episodes
    print(
        f"\n{episodes} episodes in {elapsed:.1f} s ({episodes / elapsed:.0f} episodes/s, "
        f"{args.workers} worker(s))"
    )
    if args.out:
        print(f"wrote {args.out}/episodes.csv, ticks.csv, summary.json and plots")
    return 0


def _cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from bot import wiring
    from bot.console.demo import run_demo

    engine = wiring.policy_engine(settings.policies_dir)
    seed = settings.seed if settings.seed is not None else 7
    run_demo(engine, settings.npo_config(), seed, rounds=args.rounds)
    return 0


def _cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    if settings.slack_bot_token:
        http = not settings.slack_app_token
        return _cmd_serve(argparse.Namespace(http=http, host="0.0.0.0", port=3000), settings)
    print(
        "No SLACK_BOT_TOKEN: the console adapter on the embedded defaults "
        "(type an incident, or `help`).",
        file=sys.stderr,
    )
    return _cmd_chat(args, settings)


def _cmd_chat(args: argparse.Namespace, settings: Settings) -> int:
    from bot import wiring
    from bot.console.chat import console_lines, run_console
    from bot.reporting.render import render_decision
    from bot.service.deferrals import FollowUp, run_due

    components = wiring.build(settings)
    components.ticker.notify = lambda text: print(text, file=sys.stderr)

    def show(follow: FollowUp) -> None:
        print(f"── judged again: {render_decision(follow.decision, brief=True)}", file=sys.stderr)

    def deferrals() -> None:
        run_due(components.service, components.service.deferral, show)

    scheduler = wiring.scheduler(settings, components, deferrals=deferrals)
    scheduler.start()
    try:
        if getattr(args, "json", False):
            from bot.console.chat_json import run_console_json

            def write(text: str) -> None:
                print(text, flush=True)

            return run_console_json(
                components.service, console_lines(), write, approvers=settings.approver_users
            )
        return run_console(components.service, console_lines(), approvers=settings.approver_users)
    finally:
        scheduler.shutdown(wait=False)


def _cmd_stats(args: argparse.Namespace, settings: Settings) -> int:
    import datetime as dt

    from bot.reporting.stats import alignment_report, divergence_report, format_report
    from bot.wiring import migrated_engine

    engine = migrated_engine(settings)
    if args.chart:
        from bot.reporting.charts import write_chart

        write_chart(engine, args.chart)
        print(f"wrote {args.chart}", file=sys.stderr)
    report: dict[str, object] = alignment_report(engine, dt.datetime.now(dt.UTC), args.playbook)
    if args.divergence:
        report = (
            {"divergence": divergence_report(engine)}
            if not args.json
            else {**report, "divergence": divergence_report(engine)}
        )
    print(json.dumps(report) if args.json else format_report(report))
    return 0


def _cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from bot import wiring
    from bot.slack.serve import serve_http, serve_socket_mode

    if not settings.slack_bot_token or not settings.slack_signing_secret:
        return _fail("npo serve needs SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET", EXIT_USAGE)
    if not args.http and not settings.slack_app_token:
        return _fail("Socket Mode needs SLACK_APP_TOKEN; or use --http --port P", EXIT_USAGE)
    stack = wiring.slack_stack(settings)
    stack.scheduler.start()
    stack.scheduler.add_job(stack.finish_pending)  # once now, for what a previous process left
    try:
        if args.http:
            if not stack.alerts_open:
                print(
                    "POST /alertmanager answers 401 until NPO_ALERTMANAGER_TOKEN is set",
                    file=sys.stderr,
                )
            left = serve_http(
                stack.app,
                args.host,
                args.port,
                wiring.metrics(stack.components),
                stack.alerts,
                config=wiring.http_config(settings),
                readiness=wiring.readiness(stack.components),
                listeners=stack.listeners,
                grace_seconds=settings.shutdown_grace_seconds,
            )
            return 1 if left else 0
        else:
            assert settings.slack_app_token is not None
            serve_socket_mode(stack.app, settings.slack_app_token.get_secret_value())
    finally:
        stack.scheduler.shutdown(wait=False)
    return 0


def _cmd_monitor_tick(args: argparse.Namespace, settings: Settings) -> int:
    import datetime as dt

    from bot import wiring

    ticker = wiring.ticker(
        settings,
        wiring.migrated_engine(settings),
        lambda: dt.datetime.now(dt.UTC),
        notify=lambda message: print(message, file=sys.stderr),
    )
    outcome = ticker.tick(force=True)
    if outcome is None:
        return _fail("another replica holds the monitor lock; try again")
    if args.json:
        print(json.dumps(outcome.as_dict()))
    else:
        print(f"{outcome.action.value}: {outcome.reason}")
        print(f"shadow retrain: {outcome.shadow.reason}")
        if outcome.retrain is not None:
            print("retrain " + ("accepted" if outcome.retrain.accepted else "rejected"))
    return 0


def _cmd_audit_export(args: argparse.Namespace, settings: Settings) -> int:
    import datetime as dt

    from bot.reporting.audit import export
    from bot.wiring import migrated_engine

    try:
        since = dt.datetime.fromisoformat(args.since)
    except ValueError:
        return _fail(f"--since: {args.since!r} is not a date (YYYY-MM-DD)", EXIT_USAGE)
    since = since if since.tzinfo else since.replace(tzinfo=dt.UTC)
    count = export(migrated_engine(settings), since, args.format, sys.stdout)
    print(f"{count} audit entries", file=sys.stderr)
    return 0


def _cmd_playbook_state(args: argparse.Namespace, settings: Settings) -> int:
    import datetime as dt

    from bot.governance.library import Library
    from bot.service import set_paused
    from bot.wiring import migrated_engine

    paused = args.playbook_action == "pause"
    library = Library.load(settings.playbooks_dir, settings.submissions_folder)
    changed = set_paused(
        migrated_engine(settings),
        settings.npo_config(),
        args.id,
        paused,
        args.actor,
        args.reason or "",
        dt.datetime.now(dt.UTC),
        known=library.has,
    )
    state = "paused" if paused else "resumed"
    print(f"{args.id} {state}" if changed else f"{args.id} was already {state}")
    return 0


def _cmd_db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    from bot.db.migrate import current_revision, upgrade
    from bot.wiring import database_url

    url = database_url(settings)
    upgrade(url)
    print(f"database at revision {current_revision(url)}")
    return 0


def _cmd_retention_run(args: argparse.Namespace, settings: Settings) -> int:
    import datetime as dt

    from bot.monitoring.retention import RetentionPolicy, run_retention
    from bot.wiring import migrated_engine

    report = run_retention(
        migrated_engine(settings),
        RetentionPolicy.from_settings(settings),
        dt.datetime.now(dt.UTC),
        dry_run=args.dry_run,
        force=True,  # by hand: now, even if the daily run already happened
    )
    if args.json:
        print(json.dumps(report.as_dict()))
    elif report.ran:
        verb = "would delete" if report.dry_run else "deleted"
        audit = (
            f"older than {report.audit_cutoff:%Y-%m-%d %H:%M} UTC"
            if report.audit_cutoff
            else "kept forever"
        )
        print(
            f"processed_event: {verb} {report.events} "
            f"(older than {report.events_cutoff:%Y-%m-%d %H:%M} UTC)"
        )
        print(f"audit_log: {verb} {report.audit} ({audit})")
        if report.archive:
            print(f"archived to {report.archive}")
    if report.error:
        return _fail(f"retention: {report.error}; nothing was deleted")
    if report.skipped:
        return _fail(f"retention: {report.skipped}; try again")
    return 0


def _cmd_policies_check(args: argparse.Namespace, settings: Settings) -> int:
    from bot import wiring

    directory = args.dir or settings.policies_dir
    engine = wiring.policy_engine(directory)
    print(
        f"{directory}: {len(engine.policies)} policies load cleanly: {', '.join(engine.policies)}"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="npo", description="NPO ChatOps")
    sub = parser.add_subparsers(dest="command", required=True)

    sim = sub.add_parser(
        "simulate", help="the loop against a simulated operator: utility, baselines, meta κ"
    )
    sim.add_argument("--episodes", type=int, default=400)
    sim.add_argument("--seeds", type=int, default=30)
    sim.add_argument(
        "--operator",
        choices=[o.value for o in OperatorModel],
        default=OperatorModel.OUTCOME.value,
        help="outcome: judges what happened (default); gap: the paper's score-gap rule",
    )
    sim.add_argument("--seed-base", type=int, default=0, help="first seed (default 0)")
    sim.add_argument("--variants", default=",".join(VARIANTS))
    sim.add_argument(
        "--tick-every", type=int, default=SimConfig().tick_every, help="episodes per monitor tick"
    )
    sim.add_argument("--out", type=Path, help="folder for episodes.csv, ticks.csv and plots")
    sim.add_argument("--json", action="store_true", help="print the summary as JSON only")
    sim.add_argument(
        "--policies", type=Path, help="Rego policy folder for the SPE (default: allow all)"
    )
    sim.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    sim.set_defaults(func=_cmd_simulate)

    demo = sub.add_parser("demo", help="walk through the loop on scripted incidents")
    demo.add_argument("--rounds", type=int, default=3)
    demo.set_defaults(func=_cmd_demo)

    run = sub.add_parser("run", help="run the bot (Slack if SLACK_BOT_TOKEN is set)")
    run.set_defaults(func=_cmd_run)

    serve = sub.add_parser("serve", help="the Slack app (Socket Mode, or HTTP with --http)")
    serve.add_argument("--http", action="store_true", help="serve Events/interactivity over HTTP")
    serve.add_argument("--host", default="0.0.0.0")
    serve.add_argument("--port", type=int, default=3000)
    serve.set_defaults(func=_cmd_serve)

    chat = sub.add_parser("chat", help="the console adapter: incidents and feedback on stdin")
    chat.add_argument("--json", action="store_true", help="one JSON object per line (for scripts)")
    chat.set_defaults(func=_cmd_chat)

    stats = sub.add_parser("stats", help="playbook alignment stats")
    stats.add_argument("--playbook")
    stats.add_argument("--json", action="store_true")
    stats.add_argument(
        "--divergence", action="store_true", help="where policy and practice disagree"
    )
    stats.add_argument(
        "--chart", type=Path, help="write a PNG of loss, override rate and τ over time"
    )
    stats.set_defaults(func=_cmd_stats)

    mon = sub.add_parser("monitor", help="meta-monitoring").add_subparsers(
        dest="monitor_command", required=True
    )
    tick = mon.add_parser("tick", help="run one meta-monitor tick now")
    tick.add_argument("--json", action="store_true")
    tick.set_defaults(func=_cmd_monitor_tick)

    audit = sub.add_parser("audit", help="audit log").add_subparsers(
        dest="audit_command", required=True
    )
    exp = audit.add_parser("export", help="export the audit log")
    exp.add_argument("--since", default="1970-01-01", help="date or ISO timestamp (UTC)")
    exp.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    exp.set_defaults(func=_cmd_audit_export)

    pbs = sub.add_parser("playbook", help="pause or resume a playbook").add_subparsers(
        dest="playbook_action", required=True
    )
    for action in ("pause", "resume"):
        p = pbs.add_parser(action, help=f"{action} a playbook")
        p.add_argument("id")
        p.add_argument("--actor", default="cli")
        p.add_argument("--reason")
        p.set_defaults(func=_cmd_playbook_state)

    db = sub.add_parser("db", help="database").add_subparsers(dest="db_command", required=True)
    db_up = db.add_parser("upgrade", help="apply the schema migrations")
    db_up.set_defaults(func=_cmd_db_upgrade)

    ret = sub.add_parser("retention", help="trim processed events and the audit log")
    ret_cmd = ret.add_subparsers(dest="retention_command", required=True)
    ret_run = ret_cmd.add_parser("run", help="delete what is older than the retention settings")
    ret_run.add_argument("--dry-run", action="store_true", help="count only; delete nothing")
    ret_run.add_argument("--json", action="store_true")
    ret_run.set_defaults(func=_cmd_retention_run)

    pol = sub.add_parser("policies", help="safety policies").add_subparsers(
        dest="policies_command", required=True
    )
    check = pol.add_parser("check", help="load the Rego policies and report errors")
    check.add_argument("dir", nargs="?", type=Path)
    check.set_defaults(func=_cmd_policies_check)
    playbooks_cli.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
    except (ValidationError, SettingsError) as exc:
        return _fail(f"invalid configuration: {exc}", EXIT_USAGE)
    configure_logging(settings.log_level, settings.log_format)
    try:
        return int(args.func(args, settings))
    except PolicyError as exc:
        return _fail(f"policy: {exc}")
    except ValueError as exc:
        return _fail(str(exc))


if __name__ == "__main__":
    raise SystemExit(main())
